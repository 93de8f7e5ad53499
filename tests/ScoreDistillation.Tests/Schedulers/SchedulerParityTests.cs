using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Diffusion.Schedulers;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Schedulers;

/// <summary>Parity with diffusers v0.27.2 (TestData/schedulers/scheduler_sd.*; tolerances from the vectors' README: rtol 1e-5 + atol 1e-6).</summary>
public sealed class SchedulerParityTests : IDisposable
{
    readonly Dictionary<string, Tensor> _v = TestVectors.LoadSafetensors("schedulers", "scheduler_sd.safetensors");
    readonly JsonDocument _json = TestVectors.LoadJson("schedulers", "scheduler_sd.json");

    Tensor In(string k) => _v["__input__." + k];
    Tensor Out(string k) => _v["__output__." + k];

    SchedulerConfig Config(params string[] path)
    {
        var e = _json.RootElement;
        foreach (var p in path) e = e.GetProperty(p);
        return SchedulerConfig.Parse(e.GetRawText());
    }

    [Fact]
    public void Ddpm_tables_add_noise_and_velocity_match_diffusers()
    {
        var s = new DdpmScheduler(Config("ddpm_config"));
        s.Config.PredictionType.Should().Be(PredictionType.Epsilon);
        s.Config.StepsOffset.Should().Be(1);
        TensorAssert.Close(tensor(s.Betas.ToArray()), Out("betas"), 1e-5, 1e-9);
        TensorAssert.Close(tensor(s.AlphasCumprod.ToArray()), Out("alphas_cumprod"), 1e-5, 1e-7);
        var t = In("add_noise.timesteps").to(ScalarType.Int64);
        t.data<long>().ToArray().Should().Equal(0, 10, 500, 999);
        using var scope = NewDisposeScope();
        TensorAssert.Close(s.AddNoise(In("add_noise.original_samples"), In("add_noise.noise"), t), Out("add_noise.noisy_samples"), 1e-5, 1e-6);
        TensorAssert.Close(s.GetVelocity(In("add_noise.original_samples"), In("add_noise.noise"), t), Out("get_velocity.velocity"), 1e-5, 1e-6);
        // The same table as the core's Stable Diffusion schedule.
        TensorAssert.Close(tensor(NoiseSchedule.ScaledLinear().AlphasCumprod.ToArray()), Out("alphas_cumprod"), 1e-5, 1e-7);
    }

    [Theory]
    [InlineData("epsilon", 981, 0.0, "ddim.epsilon.t981")]
    [InlineData("epsilon", 501, 0.0, "ddim.epsilon.t501")]
    [InlineData("epsilon", 21, 0.0, "ddim.epsilon.t21")]
    [InlineData("epsilon", 1, 0.0, "ddim.epsilon.t1")]
    [InlineData("epsilon", 501, 1.0, "ddim.epsilon.eta1.t501")]
    [InlineData("v_prediction", 981, 0.0, "ddim.v_prediction.t981")]
    [InlineData("v_prediction", 501, 0.0, "ddim.v_prediction.t501")]
    [InlineData("v_prediction", 21, 0.0, "ddim.v_prediction.t21")]
    [InlineData("v_prediction", 1, 0.0, "ddim.v_prediction.t1")]
    public void Ddim_step_matches_diffusers(string predictionType, long t, double eta, string prefix)
    {
        using var scope = NewDisposeScope();
        var s = new DdimScheduler(Config("ddim_configs", predictionType));
        s.SetTimesteps(50);
        s.Timesteps.Should().Equal(Out("ddim.timesteps_50").to(ScalarType.Int64).data<long>().ToArray());
        s.FinalAlphaCumprod.Should().BeApproximately(Out("ddim.final_alpha_cumprod").item<float>(), 1e-9);
        var r = s.Step(In("ddim.model_output"), t, In("ddim.sample"), eta, varianceNoise: eta > 0 ? In("ddim.variance_noise") : null);
        TensorAssert.Close(r.PredOriginalSample, Out(prefix + ".pred_original_sample"), 1e-5, 1e-6);
        TensorAssert.Close(r.PrevSample, Out(prefix + ".prev_sample"), 1e-5, 1e-6);
    }

    [Fact]
    public void Ddpm_step_is_the_posterior_mean_plus_fixed_small_noise()
    {
        using var scope = NewDisposeScope();
        var s = new DdpmScheduler(SchedulerConfig.StableDiffusion());
        var x = In("ddim.sample");
        var eps = In("ddim.model_output");
        var n = In("ddim.variance_noise");
        long t = 500;
        double a = s.AlphasCumprod[500], ap = s.AlphasCumprod[499], beta = 1 - a / ap;
        var x0 = (x.to(ScalarType.Float64) - Math.Sqrt(1 - a) * eps.to(ScalarType.Float64)) / Math.Sqrt(a);
        var mean = Math.Sqrt(ap) * beta / (1 - a) * x0 + Math.Sqrt(1 - beta) * (1 - ap) / (1 - a) * x.to(ScalarType.Float64);
        var expected = mean + Math.Sqrt((1 - ap) / (1 - a) * beta) * n.to(ScalarType.Float64);
        var r = s.Step(eps, t, x, varianceNoise: n);
        TensorAssert.Close(r.PrevSample, expected, 1e-4, 1e-5);
        // t = 0 adds no noise.
        var r0 = s.Step(eps, 0, x, varianceNoise: n);
        TensorAssert.Close(r0.PrevSample, s.Step(eps, 0, x, varianceNoise: zeros_like(n)).PrevSample, 0, 0);
    }

    [Fact]
    public void Config_parsing_and_spacings_follow_diffusers()
    {
        var c = SchedulerConfig.Parse("""{"beta_schedule":"scaled_linear","beta_start":0.00085,"beta_end":0.012,"prediction_type":"v_prediction","timestep_spacing":"trailing","steps_offset":0,"clip_sample":false,"some_unknown_key":3}""");
        c.PredictionType.Should().Be(PredictionType.VPrediction);
        var s = new DdimScheduler(c);
        s.SetTimesteps(10);
        s.Timesteps.Should().Equal(999, 899, 799, 699, 599, 499, 399, 299, 199, 99);
        var l = new DdimScheduler(c with { TimestepSpacing = "linspace" });
        l.SetTimesteps(4);
        l.Timesteps.Should().Equal(999, 666, 333, 0);
        ((Action)(() => SchedulerConfig.Parse("""{"prediction_type":"flow"}"""))).Should().Throw<FormatException>().WithMessage("*flow*");
        ((Action)(() => new DdimScheduler(c with { BetaSchedule = "cubic" }))).Should().Throw<ArgumentException>().WithMessage("*cubic*");
        ((Action)(() => s.Step(zeros(1, 4, 2, 2), 10, zeros(1, 4, 2, 3)))).Should().Throw<ArgumentException>().WithMessage("*differ in shape*");
    }

    public void Dispose()
    {
        foreach (var t in _v.Values) t.Dispose();
        _json.Dispose();
    }
}
