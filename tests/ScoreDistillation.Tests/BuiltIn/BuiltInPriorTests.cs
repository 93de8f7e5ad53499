using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class BuiltInPriorTests
{
    const int S = 8;

    /// <summary>Camera-to-world [K, 4, 4] with cameras at the given azimuths (degrees) on the equator, distance 1.2.</summary>
    internal static Tensor CamerasAt(params double[] azimuths)
    {
        var c2w = eye(4).unsqueeze(0).repeat(azimuths.Length, 1, 1);
        for (int i = 0; i < azimuths.Length; i++)
        {
            double a = azimuths[i] * Math.PI / 180;
            c2w[i, 0, 3] = tensor((float)(1.2 * Math.Cos(a)));
            c2w[i, 1, 3] = tensor((float)(1.2 * Math.Sin(a)));
        }
        return c2w;
    }

    static Tensor Images(long seed, int k)
    {
        using var g = new TorchSharp.torch.Generator((ulong)seed);
        return rand(new long[] { k, 3, S, S }, generator: g);
    }

    static BuiltInPrior Prior(IDictionary<string, ReferenceViews> sets, bool cameraAware = false, ReferenceViews? uncond = null) =>
        new(ReferenceLibrary.FromViews(sets, uncond), new BuiltInPriorOptions { TextWidth = 32, ComputeDType = ScalarType.Float64, CameraAware = cameraAware }, ownsLibrary: true);

    static NoiseQuery Query(BuiltInPrior prior, Tensor x, long[] t, string[] prompts, Tensor? cameras = null)
    {
        var text = prior.EncodeText(prompts);
        return new NoiseQuery(x, tensor(t, ScalarType.Int64), text.Tokens, cameras);
    }

    [Fact]
    public void Epsilon_is_exact_for_a_single_reference()
    {
        using var scope = NewDisposeScope();
        var r = Images(1, 1);
        using var prior = Prior(new Dictionary<string, ReferenceViews> { ["a red cube"] = new(r, CamerasAt(0), ScalarType.Float64) });
        using var g = new TorchSharp.torch.Generator(2);
        var x = randn(new long[] { 3, 3, S, S }, ScalarType.Float64, generator: g);
        var t = new long[] { 20, 500, 980 };
        var eps = prior.PredictNoise(Query(prior, x, t, new[] { "a red cube", "a red cube", "" }));
        // Only one image: x̂₀ = r, ε̂ = (x_t − √ᾱ r)/√(1 − ᾱ).
        var a = prior.Schedule.AlphaBarAt(tensor(t), 4, ScalarType.Float64);
        var expected = (x - a.sqrt() * (2 * r.to(ScalarType.Float64) - 1)) / (1 - a).sqrt();
        TensorAssert.Close(eps, expected, rtol: 1e-9, atol: 1e-9);
    }

    [Fact]
    public void Epsilon_is_exact_for_two_references_with_posterior_weights()
    {
        using var scope = NewDisposeScope();
        var r = Images(3, 2);
        using var prior = Prior(new Dictionary<string, ReferenceViews> { ["a blue sphere"] = new(r, CamerasAt(0, 90), ScalarType.Float64) });
        var r1 = 2 * r[0].to(ScalarType.Float64) - 1;
        var r2 = 2 * r[1].to(ScalarType.Float64) - 1;
        using var g = new TorchSharp.torch.Generator(4);
        var t = new long[] { 900, 700, 999 };
        var a = prior.Schedule.AlphaBarAt(tensor(t), 4, ScalarType.Float64);
        // Noisy images between the two references so both posterior weights matter.
        var mid = (0.45 * r1 + 0.55 * r2).unsqueeze(0);
        var x = a.sqrt() * mid + (1 - a).sqrt() * randn(new long[] { 3, 3, S, S }, ScalarType.Float64, generator: g);
        var eps = prior.PredictNoise(Query(prior, x, t, new[] { "a blue sphere", "a blue sphere", "a blue sphere" }));

        var expected = new Tensor[3];
        var weights = new double[3];
        for (int i = 0; i < 3; i++)
        {
            double ab = prior.Schedule.AlphaBar((int)t[i]);
            double l1 = -(x[i] - Math.Sqrt(ab) * r1).square().sum().item<double>() / (2 * (1 - ab));
            double l2 = -(x[i] - Math.Sqrt(ab) * r2).square().sum().item<double>() / (2 * (1 - ab));
            double m = Math.Max(l1, l2);
            double w1 = Math.Exp(l1 - m) / (Math.Exp(l1 - m) + Math.Exp(l2 - m));
            weights[i] = w1;
            var x0 = w1 * r1 + (1 - w1) * r2;
            expected[i] = (x[i] - Math.Sqrt(ab) * x0) / Math.Sqrt(1 - ab);
        }
        weights.Should().Contain(w => w > 0.01 && w < 0.99, "the test must exercise a non-degenerate posterior");
        TensorAssert.Close(eps, stack(expected, 0), rtol: 1e-9, atol: 1e-9);
        var w = prior.PosteriorWeights("a blue sphere", x, tensor(t));
        TensorAssert.Close(w.select(1, 0), tensor(weights, ScalarType.Float64), rtol: 1e-9, atol: 1e-12);
    }

    [Fact]
    public void Float32_prior_matches_float64_at_training_timesteps()
    {
        using var scope = NewDisposeScope();
        var r = Images(5, 6);
        var sets = () => new Dictionary<string, ReferenceViews> { ["a red cube"] = new(r, CamerasAt(0, 60, 120, 180, 240, 300)) };
        using var p64 = Prior(sets());
        using var p32 = new BuiltInPrior(ReferenceLibrary.FromViews(sets()), new BuiltInPriorOptions { TextWidth = 32 }, ownsLibrary: true);
        using var g = new TorchSharp.torch.Generator(6);
        var x = randn(new long[] { 4, 3, S, S }, generator: g);
        var t = new long[] { 20, 200, 600, 980 };
        var e64 = p64.PredictNoise(Query(p64, x.to(ScalarType.Float64), t, Enumerable.Repeat("a red cube", 4).ToArray()));
        var e32 = p32.PredictNoise(Query(p32, x, t, Enumerable.Repeat("a red cube", 4).ToArray()));
        e32.dtype.Should().Be(ScalarType.Float32);
        TensorAssert.Close(e32, e64, rtol: 1e-3, atol: 1e-3);
    }

    static (BuiltInPrior Prior, Tensor Red, Tensor Blue) TwoPromptWorld()
    {
        // "a red cube": reddish images; "a blue sphere": bluish images; unconditional = both.
        var noise = Images(7, 8) * 0.2f;
        var red = noise[..4].clone();
        red[.., 0] += 0.7f;
        var blue = noise[4..].clone();
        blue[.., 2] += 0.7f;
        var prior = Prior(new Dictionary<string, ReferenceViews>
        {
            ["a red cube"] = new(red, CamerasAt(0, 90, 180, 270)),
            ["a blue sphere"] = new(blue, CamerasAt(0, 90, 180, 270)),
        });
        return (prior, red, blue);
    }

    [Fact]
    public void Conditional_and_unconditional_differ_and_cfg_moves_towards_the_prompt()
    {
        using var scope = NewDisposeScope();
        var (prior, red, blue) = TwoPromptWorld();
        using var _ = prior;
        using var g = new TorchSharp.torch.Generator(8);
        var t = new long[] { 600, 600 };
        var a = prior.Schedule.AlphaBarAt(tensor(t), 4, ScalarType.Float64);
        // A neutral image between both prompts, noised.
        var neutral = (2 * (0.5 * red[0] + 0.5 * blue[0]) - 1).to(ScalarType.Float64).unsqueeze(0).repeat(2, 1, 1, 1);
        var x = a.sqrt() * neutral + (1 - a).sqrt() * randn(new long[] { 2, 3, S, S }, ScalarType.Float64, generator: g);
        var eps = prior.PredictNoise(Query(prior, x, t, new[] { "a red cube", "" }));
        var epsC = eps[0];
        var epsU = eps[1];
        TensorAssert.MaxAbsError(epsC, epsU).Should().BeGreaterThan(0.05);

        double RedMinusBlue(Tensor e)
        {
            var x0 = (x[0] - (1 - a[0]).sqrt() * e) / a[0].sqrt();
            return (x0[0].mean() - x0[2].mean()).item<double>();
        }
        double u = RedMinusBlue(epsU), c = RedMinusBlue(epsC), cfg = RedMinusBlue(epsU + 7.5 * (epsC - epsU));
        c.Should().BeGreaterThan(u, "the conditional estimate is redder than the unconditional one");
        cfg.Should().BeGreaterThan(c, "classifier-free guidance extrapolates towards the prompt");
    }

    [Fact]
    public void Rows_may_mix_prompts_and_timesteps_and_equal_separate_calls()
    {
        using var scope = NewDisposeScope();
        var (prior, _, _) = TwoPromptWorld();
        using var __ = prior;
        using var g = new TorchSharp.torch.Generator(9);
        var x = randn(new long[] { 5, 3, S, S }, ScalarType.Float64, generator: g);
        var t = new long[] { 100, 900, 500, 300, 50 };
        var prompts = new[] { "a red cube", "", "a blue sphere", "a red cube", "" };
        var all = prior.PredictNoise(Query(prior, x, t, prompts));
        for (int i = 0; i < 5; i++)
        {
            var one = prior.PredictNoise(Query(prior, x[i..(i + 1)], new[] { t[i] }, new[] { prompts[i] }));
            TensorAssert.Close(all[i..(i + 1)], one, rtol: 1e-12, atol: 1e-12, because: $"row {i}");
        }
    }

    [Fact]
    public void Camera_aware_variant_prefers_references_from_the_query_view()
    {
        using var scope = NewDisposeScope();
        var r = Images(10, 2);
        var sets = () => new Dictionary<string, ReferenceViews> { ["a red cube with a blue front"] = new(r, CamerasAt(0, 180)) };
        using var aware = Prior(sets(), cameraAware: true);
        using var agnostic = Prior(sets());
        var r1 = 2 * r[0].to(ScalarType.Float64) - 1;
        var r2 = 2 * r[1].to(ScalarType.Float64) - 1;
        // Equidistant from both references: a view-agnostic prior cannot choose.
        var x = (0.5 * (r1 + r2)).unsqueeze(0).repeat(2, 1, 1, 1) * Math.Sqrt(prior0(aware));
        var t = tensor(new long[] { 999, 999 });
        var front = CamerasAt(10, 170);
        var wAware = aware.PosteriorWeights("a red cube with a blue front", x, t, front);
        var wAgnostic = agnostic.PosteriorWeights("a red cube with a blue front", x, t, front);
        TensorAssert.Close(wAgnostic.select(1, 0), tensor(new[] { 0.5, 0.5 }, ScalarType.Float64), atol: 1e-9);
        wAware[0, 0].item<double>().Should().BeGreaterThan(0.99, "the query camera at 10° matches the reference at 0°");
        wAware[1, 1].item<double>().Should().BeGreaterThan(0.99, "the query camera at 170° matches the reference at 180°");

        var act = () => aware.PredictNoise(Query(aware, x, new long[] { 999, 999 }, new[] { "", "" }));
        act.Should().Throw<ArgumentException>().WithMessage("*needs NoiseQuery.Cameras*");
        aware.UsesCameras.Should().BeTrue();
        agnostic.UsesCameras.Should().BeFalse();

        static double prior0(BuiltInPrior p) => p.Schedule.AlphaBar(999);
    }

    [Fact]
    public void Encode_and_decode_images_are_inverse_and_encoding_is_differentiable()
    {
        using var scope = NewDisposeScope();
        var (prior, _, _) = TwoPromptWorld();
        using var _p = prior;
        prior.LatentShape.Should().Be(new LatentShape(3, S, S));
        prior.ImageSize.Should().Be(S);
        prior.ViewsPerSample.Should().Be(1);
        prior.Schedule.AlphaBar(500).Should().BeApproximately(0.27633268, 1e-6);
        using var g = new TorchSharp.torch.Generator(11);
        var rgb = rand(new long[] { 2, 3, S, S }, generator: g).requires_grad_(true);
        var z = prior.EncodeImages(rgb);
        TensorAssert.Close(prior.DecodeLatents(z), rgb.detach(), atol: 1e-6);
        z.sum().backward();
        TensorAssert.Close(rgb.grad!, full(2, 3, S, S, 2f));
        var big = rand(new long[] { 1, 3, 2 * S, 2 * S }, generator: g);
        prior.EncodeImages(big).shape.Should().Equal(1, 3, S, S);
    }

    [Fact]
    public void Bad_queries_name_the_problem()
    {
        using var scope = NewDisposeScope();
        var (prior, _, _) = TwoPromptWorld();
        using var _p = prior;
        var text = prior.EncodeText(new[] { "a red cube" });
        var act = () => prior.PredictNoise(new NoiseQuery(zeros(1, 4, S, S), tensor(new long[] { 1 }), text.Tokens));
        act.Should().Throw<ArgumentException>().WithMessage("*[N, 3, 8, 8]*");
        var act2 = () => prior.PredictNoise(new NoiseQuery(zeros(1, 3, S, S, ScalarType.Float64), tensor(new long[] { 1 }), prior.EncodeText(new[] { "a green cube" }).Tokens));
        act2.Should().Throw<ArgumentException>().WithMessage("*no views for \"a green cube\"*");
    }
}
