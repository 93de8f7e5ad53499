using FluentAssertions;
using ScoreDistillation.Distillers;
using ScoreDistillation.Platform;
using ScoreDistillation.Priors;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static ScoreDistillation.Tests.Distillers.DistillerTestKit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ScoreDistillation.Tests.Platform;

public class LibTorchCpuTests
{
    [Fact]
    public void The_oneDNN_switch_is_reachable_and_off_for_the_tests()
    {
        LibTorchCpu.CanSwitchOneDnn.Should().BeTrue("TorchSharp 0.107.0's torch_cpu exports at::Context::setUserEnabledMkldnn");
        LibTorchCpu.UseOneDnn.Should().BeFalse("TorchSetup turns it off at start-up");
        try
        {
            LibTorchCpu.UseOneDnn = true;
            LibTorchCpu.UseOneDnn.Should().BeTrue();
        }
        finally
        {
            LibTorchCpu.UseOneDnn = false;
        }
        LibTorchCpu.UseOneDnn.Should().BeFalse();
        LibTorchCpu.UseNnpack.Should().BeFalse("TryDisableOneDnn also turns off NNPACK, which would warn on every convolution here");
    }

    // The shape that exposed the fault (VSD's ε_φ output head): with oneDNN on, 1–12 of 300 passes had NaN input gradients.
    [Fact]
    public void Convolution_input_gradients_stay_finite_with_oneDNN_off()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(0);
        using var conv = Conv2d(32, 3, 3, padding: 1);
        int bad = 0;
        for (int i = 0; i < 600; i++)
        {
            using var inner = NewDisposeScope();
            var h = randn(4, 32, 4, 4).requires_grad_(true);
            var loss = conv.forward(functional.silu(h)).square().mean();
            var g = autograd.grad(new[] { loss }, new[] { h })[0];
            if (!g.isfinite().all().item<bool>()) bad++;
        }
        bad.Should().Be(0);
    }

    [Fact]
    public void Vsd_skips_a_non_finite_particle_update_and_counts_it()
    {
        using var scope = NewDisposeScope();
        using var prior = new Distillers.GaussianPrior();
        prior.Register("a red ball", 0.6, 0.1, 0);
        using var particle = new NaNParticle(prior.LatentShape);
        using var vsd = new VsdDistiller(prior, particle, new VsdOptions { Guidance = new() { ViewDependent = null } }, new Generator(1));
        using var cams = Cameras(new double[] { 0, 90 });
        var r = vsd.Distill(Input(Images(2, 4, 3), "a red ball", cams));
        vsd.SkippedParticleSteps.Should().Be(1);
        r.Diagnostics.Extras!["particle_skipped_steps"].Should().Be(1);
        particle.Scale.detach().isnan().all().item<bool>().Should().BeTrue("the NaN parameter is left as it was, not updated");
        vsd.ParticleOptimizerState().Where(s => s.Name != "step").Should().OnlyContain(s => s.Value.abs().sum().item<float>() == 0, "the moments are untouched");
    }

    /// <summary>ε_φ = x·s with s = NaN: every gradient is NaN.</summary>
    sealed class NaNParticle : Module<Tensor, Tensor>, ITrainableNoisePredictor
    {
        public NaNParticle(LatentShape shape) : base(nameof(NaNParticle))
        {
            LatentShape = shape;
            Scale = new Parameter(full(1, double.NaN));
            register_parameter("scale", Scale);
        }

        public Parameter Scale { get; }
        public PredictionType PredictionType => PredictionType.Epsilon;
        public LatentShape LatentShape { get; }
        public IReadOnlyList<Parameter> TrainableParameters => new[] { Scale };
        public Tensor Predict(Tensor noisyLatents, Tensor timesteps, Tensor text, Tensor cameras) => forward(noisyLatents);
        public override Tensor forward(Tensor x) => x * Scale;
    }
}
