using FluentAssertions;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static ScoreDistillation.Tests.Distillers.DistillerTestKit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Distillers;

public class DistillerFormulaTests
{
    const string Prompt = "a red ball";
    static readonly long[] T2 = { 300, 700 };

    static GaussianPrior NewPrior()
    {
        var p = new GaussianPrior();
        p.Register(Prompt, 0.6, 0.1);
        p.Register("blurry", 0.2, 0.3);
        return p;
    }

    static (Tensor Images, Tensor Noise, DistillationOverrides Overrides) Fixed(long[] t, long seed = 1)
    {
        var images = Images(t.Length, 4, seed);
        var noise = Noise(t.Length, 4, seed + 100);
        return (images, noise, new DistillationOverrides(tensor(t), null, noise));
    }

    [Theory]
    [InlineData(CfgForm.Standard, TimestepWeighting.OneMinusAlphaBar, 7.5)]
    [InlineData(CfgForm.ThreestudioSds, TimestepWeighting.OneMinusAlphaBar, 100)]
    [InlineData(CfgForm.Standard, TimestepWeighting.Uniform, 3)]
    [InlineData(CfgForm.ThreestudioSds, TimestepWeighting.SqrtAlphaBarTimesOneMinusAlphaBar, 50)]
    public void Sds_gradient_matches_formula(CfgForm form, TimestepWeighting weighting, double s)
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var (images, noise, ov) = Fixed(T2);
        using var cams = Cameras(new[] { 0.0, 90 });
        var d = new SdsDistiller(prior, new SdsOptions { Guidance = new() { GuidanceScale = s, CfgForm = form, Weighting = weighting, ViewDependent = null } });
        var r = d.Distill(Input(images, Prompt, cams, overrides: ov));

        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var ec = Eps(prior, xt, T2, Prompt);
        var eu = Eps(prior, xt, T2, "");
        var cfg = form == CfgForm.Standard ? eu + s * (ec - eu) : ec + s * (ec - eu);
        var expected = Weight(prior.Schedule, T2, weighting) * (cfg - noise.to(ScalarType.Float64));
        TensorAssert.Close(r.Gradient, expected, rtol: 1e-4, atol: 1e-5);
        r.Diagnostics.Timesteps.Should().Equal(T2);
        prior.PredictCalls.Should().Be(1, "SDS makes one batched prior call per step");
    }

    [Fact]
    public void Sds_negative_prompt_replaces_unconditional_and_clip_and_nan_apply_in_order()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var (images, noise, ov) = Fixed(T2);
        using var cams = Cameras(new[] { 0.0, 0 });
        var d = new SdsDistiller(prior, new SdsOptions { Guidance = new() { GuidanceScale = 100, CfgForm = CfgForm.ThreestudioSds, ViewDependent = null, GradientClip = 0.05, NegativePrompt = "blurry" } });
        var r = d.Distill(Input(images, Prompt, cams, overrides: ov));
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var ec = Eps(prior, xt, T2, Prompt);
        var en = Eps(prior, xt, T2, "blurry");
        var expected = (Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * (ec + 100 * (ec - en) - noise.to(ScalarType.Float64))).clamp(-0.05, 0.05);
        TensorAssert.Close(r.Gradient, expected, rtol: 1e-4, atol: 1e-5);
        r.Gradient.abs().max().item<float>().Should().BeLessThanOrEqualTo(0.05f);
    }

    [Fact]
    public void Nan_predictions_become_zero_unless_disabled()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        prior.InjectNaN = true;
        var (images, _, ov) = Fixed(T2, 2);
        using var cams = Cameras(new[] { 0.0, 0 });
        var r = new SdsDistiller(prior, new SdsOptions { Guidance = new() { ViewDependent = null } }).Distill(Input(images, Prompt, cams, overrides: ov));
        TensorAssert.AllFinite(r.Gradient);
        r.Gradient[0, 0, 0, 0].item<float>().Should().Be(0);
        r.Gradient[1, 0, 0, 0].item<float>().Should().NotBe(0);
        var raw = new SdsDistiller(prior, new SdsOptions { Guidance = new() { ViewDependent = null, NanToNum = false } }).Distill(Input(images, Prompt, cams, overrides: ov));
        float.IsNaN(raw.Gradient[0, 0, 0, 0].item<float>()).Should().BeTrue();
    }

    [Theory]
    [InlineData(1, 0, -1, 0)]
    [InlineData(1, -0.5, -0.5, 0)]
    [InlineData(2, -1, 0.3, -0.7)]
    public void Csd_gradient_matches_formula(double a, double b, double c, double dScale)
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var (images, noise, ov) = Fixed(T2, 3);
        using var cams = Cameras(new[] { 0.0, 0 });
        var d = new CsdDistiller(prior, new CsdOptions { CondScale = a, UncondScale = b, NullScale = c, NoiseScale = dScale, Guidance = new() { ViewDependent = null, NegativePrompt = "blurry" } });
        var r = d.Distill(Input(images, Prompt, cams, overrides: ov));
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var combo = a * Eps(prior, xt, T2, Prompt) + b * Eps(prior, xt, T2, "blurry") + c * Eps(prior, xt, T2, "") + dScale * noise.to(ScalarType.Float64);
        TensorAssert.Close(r.Gradient, Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * combo, rtol: 1e-4, atol: 1e-5);
        prior.PredictCalls.Should().Be(1);
    }

    [Fact]
    public void Csd_scales_follow_their_schedules()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var (images, noise, ov) = Fixed(T2, 4);
        using var cams = Cameras(new[] { 0.0, 0 });
        var opts = CsdOptions.StableDiffusionRefine with { Guidance = new() { ViewDependent = null, NegativePrompt = "blurry" } };
        var r = new CsdDistiller(prior, opts).Distill(Input(images, Prompt, cams, new TrainingProgress(5000, 20000), ov));
        // At step 5000 of [0, −1, −0.5, 10000] the negative scale is −0.75; the null scale of [0, 0, −0.5, 10000] is −0.25.
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var combo = Eps(prior, xt, T2, Prompt) - 0.75 * Eps(prior, xt, T2, "blurry") - 0.25 * Eps(prior, xt, T2, "");
        TensorAssert.Close(r.Gradient, Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * combo, rtol: 1e-4, atol: 1e-5);
    }

    [Theory]
    [InlineData(new long[] { 5, 17 })]
    [InlineData(new long[] { 0, 40 })]
    public void Asd_gradient_matches_formula_for_given_shift(long[] dt)
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(2, 4, 5);
        var noise = Noise(2, 4, 6);
        using var cams = Cameras(new[] { 0.0, 0 });
        var d = new AsdDistiller(prior, new AsdOptions { Guidance = AsdOptions.Default.Guidance with { ViewDependent = null } });
        var r = d.Distill(Input(images, Prompt, cams, overrides: new(tensor(T2), tensor(dt), noise)));
        var tp = T2.Zip(dt, (a, b) => a + b).ToArray();
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var xp = AddNoise(prior.Schedule, images.detach(), noise, tp);
        var ec = Eps(prior, xt, T2, Prompt);
        var eu = Eps(prior, xt, T2, "");
        var e2 = Eps(prior, xp, tp, Prompt);
        var expected = Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * (eu + 7.5 * (ec - eu) - e2);
        TensorAssert.Close(r.Gradient, expected, rtol: 1e-4, atol: 1e-5);
        r.Diagnostics.TimestepShifts.Should().Equal(dt);
        prior.PredictCalls.Should().Be(1);
        prior.PredictRows.Should().Be(6, "ASD sends [x_t; x_t; x_{t+Δt}] in one call");
    }

    [Fact]
    public void Asd_with_zero_shift_equals_Csd_with_scales_s_minus_1()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(2, 4, 7);
        var noise = Noise(2, 4, 8);
        using var cams = Cameras(new[] { 0.0, 0 });
        double s = 7.5;
        var asd = new AsdDistiller(prior, new AsdOptions { Guidance = new() { GuidanceScale = s, ViewDependent = null } });
        var csd = new CsdDistiller(prior, new CsdOptions { CondScale = s - 1, UncondScale = 0, NullScale = -(s - 1), NoiseScale = 0, Guidance = new() { ViewDependent = null } });
        var ra = asd.Distill(Input(images, Prompt, cams, overrides: new(tensor(T2), tensor(new long[] { 0, 0 }), noise)));
        var rc = csd.Distill(Input(images, Prompt, cams, overrides: new(tensor(T2), null, noise)));
        TensorAssert.Close(ra.Gradient, rc.Gradient, rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void Asd_shift_follows_reference_formula_and_clamp()
    {
        using var scope = NewDisposeScope();
        // Deterministic: Δt = ⌊η(t − t_min)⌋ clamped to 999 − t; random scales by U before truncation.
        var t = tensor(new long[] { 20, 500, 980, 995 });
        AsdDistiller.TimestepShift(t, 20, 0.1, null, 1000).data<long>().ToArray().Should().Equal(0, 48, 19, 4);
        var u = tensor(new double[] { 0.5, 0.5, 0.5, 0.999 });
        AsdDistiller.TimestepShift(t, 20, 0.1, u, 1000).data<long>().ToArray().Should().Equal(0, 24, 9, 3);

        using var prior = NewPrior();
        var images = Images(4, 4, 9);
        using var cams = Cameras(new double[4]);
        var d = new AsdDistiller(prior, new AsdOptions { RandomShift = false, Guidance = AsdOptions.Default.Guidance with { ViewDependent = null } });
        var r = d.Distill(Input(images, Prompt, cams, new TrainingProgress(0, 100), new(tensor(new long[] { 500, 700, 980, 998 }))));
        // At step 0 the window is [500, 980], so t_min = 500.
        r.Diagnostics.TimestepShifts.Should().Equal(0, 20, 19, 1);
    }

    [Theory]
    [InlineData(30.0, 0.0)]
    [InlineData(120.0, 10.0)]
    [InlineData(-150.0, 0.0)]
    [InlineData(45.0, 70.0)]
    public void Perp_neg_weights_and_guidance_match_scaledreamer_3_7(double azimuth, double elevation)
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(1, 4, 10);
        var noise = Noise(1, 4, 11);
        using var cams = Cameras(new[] { azimuth }, new[] { elevation });
        long[] t = { 400 };
        var opts = AsdOptions.ScaleDreamerStableDiffusion;
        var d = new AsdDistiller(prior, opts);
        var r = d.Distill(Input(images, Prompt, cams, overrides: new(tensor(t), tensor(new long[] { 10 }), noise)));

        // Independent re-derivation of §3.7.
        double f(double a, double b, double c, double x) => a * Math.Exp(-b * x) + c;
        var (side, front, back, over) = (prior.Parameters(Prompt + ", side view"), prior.Parameters(Prompt + ", front view"),
            prior.Parameters(Prompt + ", back view"), prior.Parameters(Prompt + ", overhead view"));
        double azi = Math.Abs(((azimuth + 180) % 360 + 360) % 360 - 180);
        double[] muPos; string n0, n1; double w0, w1;
        if (elevation > 60) { muPos = over.Mu; n0 = n1 = ""; w0 = w1 = 0; }
        else if (azi < 90)
        {
            double rr = 1 - azi / 90;
            muPos = front.Mu.Zip(side.Mu, (a, b) => rr * a + (1 - rr) * b).ToArray();
            n0 = Prompt + ", front view"; n1 = Prompt + ", side view";
            w0 = -f(4, 0.5, -2.426, rr); w1 = -f(4, 0.5, -2.426, 1 - rr);
        }
        else
        {
            double rr = 2 - azi / 90;
            muPos = side.Mu.Zip(back.Mu, (a, b) => rr * a + (1 - rr) * b).ToArray();
            n0 = Prompt + ", side view"; n1 = Prompt + ", front view";
            w0 = -f(1, 0.5, -0.606, rr); w1 = -f(1, 0.5, 0.967, rr);
        }
        w0 *= 0.5; w1 *= 0.5;
        var xt = AddNoise(prior.Schedule, images.detach(), noise, t);
        var ePos = Eps(prior.Schedule, xt, t, new[] { muPos }, new[] { 0.1 });
        var eu = Eps(prior, xt, t, "");
        var eN0 = Eps(prior, xt, t, n0);
        var eN1 = Eps(prior, xt, t, n1);
        var dPos = ePos - eu;
        var guided = eu + 7.5 * (dPos + w0 * Perp(eN0 - eu, dPos) + w1 * Perp(eN1 - eu, dPos));
        long[] tp = { 410 };
        var e2 = Eps(prior.Schedule, AddNoise(prior.Schedule, images.detach(), noise, tp), tp, new[] { muPos }, new[] { 0.1 });
        var expected = Weight(prior.Schedule, t, TimestepWeighting.OneMinusAlphaBar) * (guided - e2);
        TensorAssert.Close(r.Gradient, expected, rtol: 2e-4, atol: 2e-5);
        prior.PredictCalls.Should().Be(1);
        prior.PredictRows.Should().Be(5, "Perp-Neg ASD sends [pos; uncond; neg; neg; pos at t+Δt]");
    }

    [Fact]
    public void View_dependent_prompting_picks_threestudio_directions()
    {
        var o = ViewDependentOptions.Threestudio;
        PromptBatch.Direction(0, 10, o).Should().Be(ViewDirection.Front);
        PromptBatch.Direction(0, 44, o).Should().Be(ViewDirection.Front);
        PromptBatch.Direction(0, 90, o).Should().Be(ViewDirection.Side);
        PromptBatch.Direction(0, 170, o).Should().Be(ViewDirection.Back);
        PromptBatch.Direction(0, -140, o).Should().Be(ViewDirection.Back);
        PromptBatch.Direction(0, 350, o).Should().Be(ViewDirection.Front);
        PromptBatch.Direction(61, 10, o).Should().Be(ViewDirection.Overhead);
        PromptBatch.Direction(0, 40, ViewDependentOptions.ScaleDreamer).Should().Be(ViewDirection.Side);

        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(2, 4, 12);
        var noise = Noise(2, 4, 13);
        using var cams = Cameras(new[] { 0.0, 180 });
        var d = new SdsDistiller(prior, new SdsOptions { Guidance = new() { GuidanceScale = 10, CfgForm = CfgForm.Standard } });
        var r = d.Distill(Input(images, Prompt, cams, overrides: new(tensor(T2), null, noise)));
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var (f, b) = (prior.Parameters(Prompt + ", front view"), prior.Parameters(Prompt + ", back view"));
        var ec = Eps(prior.Schedule, xt, T2, new[] { f.Mu, b.Mu }, new[] { 0.1, 0.1 });
        var eu = Eps(prior, xt, T2, "");
        TensorAssert.Close(r.Gradient, Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * (eu + 10 * (ec - eu) - noise.to(ScalarType.Float64)), rtol: 1e-4, atol: 1e-5);
    }

    [Fact]
    public void Vsd_gradient_matches_formula_with_particle_v_to_eps()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        using var particle = new CameraConditionedNoisePredictor(prior.LatentShape, prior.D, 16, PredictionType.VPrediction, seed: 3);
        var (images, noise, ov) = Fixed(T2, 14);
        using var cams = Cameras(new[] { 20.0, 100 });
        using var d = new VsdDistiller(prior, particle, new VsdOptions { Guidance = new() { ViewDependent = null }, TrainParticleEveryStep = false });
        var r = d.Distill(Input(images, Prompt, cams, overrides: ov));
        var xt = AddNoise(prior.Schedule, images.detach(), noise, T2);
        var pre = Eps(prior, xt, T2, "") + 7.5 * (Eps(prior, xt, T2, Prompt) - Eps(prior, xt, T2, ""));
        Tensor v;
        using (no_grad())
        {
            using var enc = prior.EncodeText(new[] { Prompt, Prompt });
            v = particle.Predict(xt.to(ScalarType.Float32), tensor(T2), enc.Tokens, cams.CameraToWorld.reshape(2, 16)).to(ScalarType.Float64);
        }
        var ab = tensor(T2.Select(t => prior.Schedule.AlphaBar((int)t)).ToArray()).reshape(2, 1, 1, 1);
        var phi = ab.sqrt() * v + (1 - ab).sqrt() * xt;
        TensorAssert.Close(r.Gradient, Weight(prior.Schedule, T2, TimestepWeighting.OneMinusAlphaBar) * (pre - phi), rtol: 1e-4, atol: 1e-5);
        prior.PredictCalls.Should().Be(1);
    }

    [Fact]
    public void Ism_gradient_matches_ddim_inversion_formula()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(1, 4, 15);
        var noise = Noise(1, 4, 16);
        using var cams = Cameras(new[] { 0.0 });
        long t = 650;
        var d = new IsmDistiller(prior, new IsmOptions { IntervalSteps = 50, GradientScale = 0.1 });
        var r = d.Distill(Input(images, Prompt, cams, overrides: new(tensor(new[] { t }), null, noise)));
        var sch = prior.Schedule;
        // s = 600; s0 = max(600 − 5·200, 0) = 0; inversion 0 → 200 → 400 → 600, then 600 → 650.
        Tensor Move(Tensor x, Tensor e, long from, long to)
        {
            double a0 = sch.AlphaBar((int)from), a1 = sch.AlphaBar((int)to);
            var x0 = (x - Math.Sqrt(1 - a0) * e) / Math.Sqrt(a0);
            return Math.Sqrt(a1) * x0 + Math.Sqrt(1 - a1) * e;
        }
        var x = AddNoise(sch, images.detach(), noise, new long[] { 0 });
        long cur = 0;
        foreach (long next in new long[] { 200, 400, 600 })
        {
            x = Move(x, Eps(prior, x, new[] { cur }, ""), cur, next);
            cur = next;
        }
        var target = Eps(prior, x, new long[] { 600 }, "");
        var xt = Move(x, target, 600, t);
        var eu = Eps(prior, xt, new[] { t }, "");
        var cfg = eu + 7.5 * (Eps(prior, xt, new[] { t }, Prompt) - eu);
        var expected = 0.1 * Weight(sch, new[] { t }, TimestepWeighting.SigmaOverAlpha) * (cfg - target);
        TensorAssert.Close(r.Gradient, expected, rtol: 2e-4, atol: 2e-5);
        r.Diagnostics.TimestepShifts.Should().Equal(50);
        prior.PredictCalls.Should().Be(5, "three inversion jumps, the target at s and the final CFG call");
    }

    [Fact]
    public void Loss_gradient_with_respect_to_images_is_g_over_B()
    {
        using var scope = NewDisposeScope();
        using var prior = NewPrior();
        var images = Images(3, 4, 17);
        using var cams = Cameras(new double[] { 0, 90, 180 });
        foreach (IScoreDistiller d in new IScoreDistiller[]
                 {
                     new SdsDistiller(prior), new CsdDistiller(prior), new AsdDistiller(prior), new IsmDistiller(prior),
                 })
        {
            images.grad?.zero_();
            var r = d.Distill(Input(images, Prompt, cams));
            r.Loss.backward();
            TensorAssert.Close(images.grad!, r.Gradient / 3, rtol: 1e-5, atol: 1e-7, because: d.Name);
            r.Loss.item<float>().Should().BeApproximately((float)(0.5 * r.Gradient.pow(2).sum().item<float>() / 3), 1e-3f);
        }
    }

    [Fact]
    public void Exact_epsilon_of_the_gaussian_prior_is_the_conditional_mean_of_the_noise()
    {
        // Orthogonality principle: ε − ε*(x_t) is uncorrelated with x_t and has zero mean, and ε* beats perturbed predictors.
        using var scope = NewDisposeScope();
        using var prior = new GaussianPrior(size: 2);
        prior.Register("p", 0.5, 0.3, 0);
        var g = new Generator(42);
        int n = 20000;
        var (mu, sigma) = prior.Parameters("p");
        var x0 = tensor(mu).to(ScalarType.Float32).reshape(1, 3, 2, 2) + sigma * randn(new long[] { n, 3, 2, 2 }, generator: g);
        var eps = randn(new long[] { n, 3, 2, 2 }, generator: g);
        var t = full(n, 400L);
        var xt = prior.Schedule.AddNoise(x0, eps, t);
        using var enc = prior.EncodeText(new[] { "p" });
        var pred = prior.PredictNoise(new ScoreDistillation.Priors.NoiseQuery(xt, t, enc.Tokens.expand(n, -1, -1)));
        var res = (eps - pred).to(ScalarType.Float64);
        res.mean().item<double>().Should().BeApproximately(0, 0.01);
        var xc = xt.to(ScalarType.Float64) - xt.to(ScalarType.Float64).mean(new long[] { 0 }, keepdim: true);
        ((res * xc).mean().item<double>()).Should().BeApproximately(0, 0.01);
        double best = res.pow(2).mean().item<double>();
        ((double)(eps - 1.1 * pred).pow(2).mean().item<float>()).Should().BeGreaterThan(best);
        ((double)(eps - pred - 0.05).pow(2).mean().item<float>()).Should().BeGreaterThan(best);
    }
}
