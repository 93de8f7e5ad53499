using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.MVDream;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Clip;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.MVDream;

/// <summary>A tiny MVDream prior assembled from the test vectors: an official-layout .pt plus a Stable Diffusion folder for text.</summary>
public sealed class TinyMVDream : IDisposable
{
    public TinyMVDream()
    {
        Dir = Directory.CreateTempSubdirectory("mvdream-prior").FullName;
        var unet = MultiViewUNetTests.Vectors();
        var vae = TestVectors.LoadSafetensors("mvdream", "ldm_vae_tiny.safetensors");
        var all = new Dictionary<string, Tensor>(MultiViewUNetTests.WeightsWithCheckpointPrefix(unet));
        foreach (var (k, t) in vae) if (k.StartsWith(LdmKeyMap.VaePrefix, StringComparison.Ordinal)) all[k] = t;
        Checkpoint = Path.Combine(Dir, "tiny-4view.pt");
        PyTorchPickler.PickleStateDict(Checkpoint, all);

        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip", "clip_text_tiny_quickgelu.safetensors"));
        string text = ClipTestFolders.Create("clip", "clip_text_tiny_quickgelu.json", weights);
        Directory.CreateDirectory(Path.Combine(Dir, "sd"));
        Directory.Move(text, Path.Combine(Dir, "sd", "text_encoder"));
        Directory.CreateDirectory(Path.Combine(Dir, "sd", "tokenizer"));
        File.Copy(TestVectors.PathOf("clip", "vocab.json"), Path.Combine(Dir, "sd", "tokenizer", "vocab.json"));
        File.Copy(TestVectors.PathOf("clip", "merges.txt"), Path.Combine(Dir, "sd", "tokenizer", "merges.txt"));
        foreach (var t in unet.Values.Concat(vae.Values).Concat(weights.Values).Concat(data.Values)) t.Dispose();

        Prior = MVDreamPrior.FromCheckpoint(Checkpoint, Path.Combine(Dir, "sd"), new MVDreamPriorOptions
        {
            UNetConfig = MultiViewUNetTests.Tiny,
            VaeConfig = LdmVaeTests.Tiny,
            ImageSize = 32,
        });
    }

    public string Dir { get; }
    public string Checkpoint { get; }
    public MVDreamPrior Prior { get; }

    /// <summary>Four views 90° apart around one object, our camera convention.</summary>
    public static CameraBatch Views(int samples = 1)
    {
        var el = new List<float>(); var az = new List<float>(); var c2w = new List<float>();
        for (int s = 0; s < samples; s++)
            for (int v = 0; v < 4; v++)
            {
                double e = 20 + 5 * s, a = 30 + 90 * v, d = 2.0;
                el.Add((float)e); az.Add((float)a);
                double er = e * Math.PI / 180, ar = a * Math.PI / 180;
                var pos = new[] { d * Math.Cos(er) * Math.Cos(ar), d * Math.Cos(er) * Math.Sin(ar), d * Math.Sin(er) };
                var look = pos.Select(p => -p / d).ToArray();
                var right = Norm(Cross(look, new[] { 0.0, 0, 1 }));
                var up = Norm(Cross(right, look));
                for (int r = 0; r < 3; r++) c2w.AddRange(new[] { (float)right[r], (float)up[r], (float)-look[r], (float)pos[r] });
                c2w.AddRange(new[] { 0f, 0, 0, 1 });
            }
        int n = samples * 4;
        return new CameraBatch(tensor(c2w.ToArray()).reshape(n, 4, 4), full(n, 40f), tensor(el.ToArray()), tensor(az.ToArray()), full(n, 2f));
    }

    static double[] Cross(double[] a, double[] b) => new[] { a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0] };
    static double[] Norm(double[] v) { double n = Math.Sqrt(v.Sum(x => x * x)); return v.Select(x => x / n).ToArray(); }

    public void Dispose()
    {
        Prior.Dispose();
        Directory.Delete(Dir, true);
    }
}

public class MVDreamPriorTests
{
    [Fact]
    public void Prior_from_an_official_layout_checkpoint_has_the_multi_view_shape_and_needs_cameras()
    {
        using var tiny = new TinyMVDream();
        var p = tiny.Prior;
        p.ViewsPerSample.Should().Be(4);
        p.UsesCameras.Should().BeTrue();
        p.LatentShape.Should().Be(new LatentShape(4, 16, 16));
        using var scope = NewDisposeScope();
        using var text = p.EncodeText(new[] { "a red cube", "a red cube", "a red cube", "a red cube" });
        text.Tokens.shape.Should().Equal(4, 77, 32);
        var x = randn(4, 4, 16, 16);
        var t = full(4, 500L);
        var act = () => p.PredictNoise(new NoiseQuery(x, t, text.Tokens));
        act.Should().Throw<ArgumentException>().WithMessage("*cameras*");
        using var cams = TinyMVDream.Views();
        var eps = p.PredictNoise(new NoiseQuery(x, t, text.Tokens, cams.CameraToWorld));
        eps.shape.Should().Equal(4, 4, 16, 16);
        using var cam2 = TinyMVDream.Views();
        cam2.CameraToWorld[.., ..3, 3].mul_(3); // a different distance: MVDream only sees the direction
        TensorAssert.Close(p.PredictNoise(new NoiseQuery(x, t, text.Tokens, cam2.CameraToWorld)), eps, rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void ASD_step_on_MVDream_puts_12_images_in_one_call_and_reaches_the_rendered_RGB()
    {
        using var tiny = new TinyMVDream();
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var images = rand(new long[] { 8, 3, 32, 32 }, generator: g).requires_grad_();
        using var cams = TinyMVDream.Views(2);
        var asd = new AsdDistiller(tiny.Prior, new AsdOptions { Guidance = new AsdOptions().Guidance with { ViewDependent = null } }, new Generator(1));
        var result = asd.Distill(new DistillationInput(images, Enumerable.Repeat("a red cube", 8).ToArray(), cams, new TrainingProgress(10, 100)));
        result.Loss.backward();
        TensorAssert.AllFinite(images.grad!);
        images.grad!.abs().sum().item<float>().Should().BeGreaterThan(0);
        var ts = result.Diagnostics.Timesteps;
        ts.Take(4).Distinct().Should().HaveCount(1, "the four views of a sample share t");
        ts.Skip(4).Distinct().Should().HaveCount(1);
        result.Diagnostics.TimestepShifts.Take(4).Distinct().Should().HaveCount(1, "and Δt");
    }

    [Theory]
    [InlineData("SDS")]
    [InlineData("CSD")]
    [InlineData("VSD")]
    [InlineData("ISM")]
    [InlineData("SDS-MVDream")]
    public void Every_distiller_runs_on_the_multi_view_prior_and_reaches_the_RGB(string name)
    {
        using var tiny = new TinyMVDream();
        using var scope = NewDisposeScope();
        var prior = tiny.Prior;
        var noViewPrompts = new GuidanceOptions { ViewDependent = null };
        using var particle = new CameraConditionedNoisePredictor(prior.LatentShape, 32);
        IScoreDistiller d = name switch
        {
            "SDS" => new SdsDistiller(prior, new SdsOptions { Guidance = new SdsOptions().Guidance with { ViewDependent = null } }, new Generator(1)),
            "CSD" => new CsdDistiller(prior, new CsdOptions { Guidance = noViewPrompts }, new Generator(1)),
            "VSD" => new VsdDistiller(prior, particle, new VsdOptions { Guidance = noViewPrompts }, new Generator(1)),
            "ISM" => new IsmDistiller(prior, new IsmOptions { Guidance = new IsmOptions().Guidance with { ViewDependent = null } }, new Generator(1)),
            _ => new MVDreamSdsDistiller(prior, generator: new Generator(1)),
        };
        var images = rand(new long[] { 4, 3, 32, 32 }, generator: new Generator(2)).requires_grad_();
        using var cams = TinyMVDream.Views();
        var result = d.Distill(new DistillationInput(images, Enumerable.Repeat("a red cube", 4).ToArray(), cams, new TrainingProgress(50, 100)));
        result.Loss.backward();
        TensorAssert.AllFinite(images.grad!);
        images.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, name);
        result.Diagnostics.Timesteps.Distinct().Should().HaveCount(1, "the four views of one sample share t");
    }

    [Fact]
    public void MVDream_SDS_reconstruction_gradient_is_sigma_over_alpha_times_the_CFG_residual_without_rescale()
    {
        using var tiny = new TinyMVDream();
        using var scope = NewDisposeScope();
        var prior = tiny.Prior;
        var images = rand(new long[] { 4, 3, 32, 32 }, generator: new Generator(3)).requires_grad_();
        using var cams = TinyMVDream.Views();
        var noise = randn(new long[] { 4, 4, 16, 16 }, generator: new Generator(4));
        var t = full(4, 600L);
        var sds = new MVDreamSdsDistiller(prior, new MVDreamSdsOptions { StdRescale = 0 }, new Generator(5));
        var prompts = Enumerable.Repeat("a blue chair", 4).ToArray();
        var result = sds.Distill(new DistillationInput(images, prompts, cams, new TrainingProgress(0, 10), Overrides: new DistillationOverrides(t, Noise: noise)));

        // Recompute by hand with the same VAE sample.
        var z = prior.EncodeImages(images.detach(), new Generator(5));
        var xt = prior.Schedule.AddNoise(z, noise, t);
        using var cond = prior.EncodeText(prompts);
        using var uncond = prior.EncodeText(new[] { "", "", "", "" });
        var e = prior.PredictNoise(new NoiseQuery(cat(new[] { xt, xt }), cat(new[] { t, t }), cat(new[] { cond.Tokens, uncond.Tokens }),
            cat(new[] { cams.CameraToWorld, cams.CameraToWorld }))).chunk(2);
        var epsHat = e[1] + 50 * (e[0] - e[1]);
        double ab = prior.Schedule.AlphaBar(600);
        var expected = Math.Sqrt((1 - ab) / ab) * (epsHat - noise);
        TensorAssert.Close(result.Gradient, expected, rtol: 1e-3, atol: 1e-4);
    }
}
