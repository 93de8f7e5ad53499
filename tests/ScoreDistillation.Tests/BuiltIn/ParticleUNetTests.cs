using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class ParticleUNetTests(ITestOutputHelper output)
{
    [Fact]
    public void Tiny_unet_predicts_the_latent_shape_is_seeded_and_every_part_gets_gradient()
    {
        using var scope = NewDisposeScope();
        var shape = new LatentShape(3, 16, 16);
        using var a = new BuiltInParticleUNet(shape, textDim: 32, seed: 3);
        using var b = new BuiltInParticleUNet(shape, textDim: 32, seed: 3);
        using var g = new TorchSharp.torch.Generator(1);
        var x = randn(new long[] { 2, 3, 16, 16 }, generator: g);
        var t = tensor(new long[] { 10, 900 });
        var text = randn(new long[] { 2, 8, 32 }, generator: g);
        var cams = randn(new long[] { 2, 16 }, generator: g);
        var y = a.Predict(x, t, text, cams);
        y.shape.Should().Equal(2, 3, 16, 16);
        TensorAssert.Close(b.Predict(x, t, text, cams), y, rtol: 0, atol: 0, because: "same seed, same weights");
        TensorAssert.MaxAbsError(a.Predict(x, t, text, zeros(2, 16)), y).Should().BeGreaterThan(0, "the camera conditions the output");
        y.square().mean().backward();
        a.TrainableParameters.Count(p => p.grad is not null && p.grad.abs().sum().item<float>() > 0)
            .Should().BeGreaterThan(a.TrainableParameters.Count * 9 / 10);
        long count = a.TrainableParameters.Sum(p => p.numel());
        output.WriteLine($"tiny particle UNet: {count:N0} parameters");
        a.PredictionType.Should().Be(PredictionType.VPrediction);
    }

    [Fact]
    public void Vsd_runs_against_the_built_in_prior_with_the_tiny_unet()
    {
        using var scope = NewDisposeScope();
        using var prior = new BuiltInPrior(new BuiltInPriorOptions { References = ReferenceRenderingTests.Small(), TextWidth = 64 });
        using var particle = new BuiltInParticleUNet(prior.LatentShape, prior.Options.TextWidth, seed: 1);
        using var vsd = new VsdDistiller(prior, particle, new VsdOptions { Guidance = new() { ViewDependent = null } }, new TorchSharp.torch.Generator(2));
        using var cams = Cameras.FromSpherical(tensor(new float[] { 15, 15 }), tensor(new float[] { 0, 180 }), tensor(new float[] { 1.2f, 1.2f }), tensor(new float[] { 50, 50 }));
        var before = particle.TrainableParameters.Select(p => p.detach().clone()).ToArray();
        using var g = new TorchSharp.torch.Generator(3);
        var images = rand(new long[] { 2, 3, 16, 16 }, generator: g).requires_grad_(true);
        var r = vsd.Distill(new DistillationInput(images, new[] { "a red cube", "a blue sphere" }, cams, new TrainingProgress(0, 10)));
        r.Gradient.shape.Should().Equal(2, 3, 16, 16);
        TensorAssert.AllFinite(r.Gradient);
        r.Loss.backward();
        images.grad.Should().NotBeNull();
        particle.TrainableParameters.Zip(before).Should().Contain(p => (p.First.detach() - p.Second).abs().max().item<float>() > 0, "VSD trains ε_φ");
    }
}
