using FluentAssertions;
using ScoreDistillation.Diffusion.Lora;
using ScoreDistillation.Diffusion.StableDiffusion;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Distillers;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static ScoreDistillation.Tests.Diffusion.Loading.SafetensorsTestFiles;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.StableDiffusion;

/// <summary>VSD with the LoRA particle model and ASD, end to end on the tiny Stable Diffusion prior (tokenizer → CLIP → VAE → UNet → distiller).</summary>
public sealed class StableDiffusionParticleModelTests(ITestOutputHelper output)
{
    const string Prompt = "a photo of a red cat";

    [Fact]
    public void VsdStepTrainsTheParticleAndTheGradientReachesTheRgb()
    {
        using var dir = new TempDir();
        StableDiffusionPriorTests.WriteTinyFolder(dir.Path);
        var v = TestVectors.LoadSafetensors("diffusers", "unet_sd15_tiny.safetensors");
        try
        {
            using var prior = StableDiffusionPrior.FromPretrained(dir.Path);
            using var particle = StableDiffusionParticleModel.FromPrior(prior, new LoraOptions { Seed = 1 });
            particle.Unet.Should().BeSameAs(prior.Unet);
            particle.PredictionType.Should().Be(PredictionType.Epsilon);
            using var vsd = new VsdDistiller(prior, particle, new VsdOptions { Guidance = new() { ViewDependent = null }, LearningRate = 1e-3 }, new Generator(3));
            using var cams = DistillerTestKit.Cameras(new double[] { 30 }, new double[] { 15 });
            using var scope = NewDisposeScope();
            var rgb = rand(new long[] { 1, 3, 32, 32 }, generator: new Generator(5)).requires_grad_(true);
            var upsBefore = particle.Adapter.NamedParameters.Where(kv => kv.Key.EndsWith(".up.weight", StringComparison.Ordinal)).Select(kv => kv.Value.detach().clone()).ToList();

            var r = vsd.Distill(DistillerTestKit.Input(rgb, Prompt, cams, new TrainingProgress(0, 100)));
            double particleLoss = vsd.LastParticleLoss;
            output.WriteLine($"VSD: loss {r.Loss.item<float>():G4}, |g| {r.Diagnostics.GradientNorm:G4}, ε_φ loss {particleLoss:G4}, t {r.Diagnostics.Timesteps[0]}");
            double.IsFinite(particleLoss).Should().BeTrue();
            particleLoss.Should().BeGreaterThan(0);
            r.Diagnostics.Extras!["particle_loss"].Should().Be(particleLoss);
            TensorAssert.AllFinite(r.Gradient, "VSD gradient");

            r.Loss.backward();
            rgb.grad.Should().NotBeNull();
            TensorAssert.AllFinite(rgb.grad!, "rgb gradient");
            double norm = rgb.grad!.norm().item<float>();
            output.WriteLine($"|grad rgb| {norm:G4}");
            norm.Should().BeGreaterThan(0);

            var upsAfter = particle.Adapter.NamedParameters.Where(kv => kv.Key.EndsWith(".up.weight", StringComparison.Ordinal)).Select(kv => kv.Value).ToList();
            upsAfter.Zip(upsBefore).Should().Contain(pair => (pair.First - pair.Second).abs().max().item<float>() > 0, "AdamW stepped the LoRA");
            prior.Unet.parameters().Where(p => p.grad is not null).Should().BeEmpty("the shared base UNet is frozen");

            // The prior still computes the pretrained ε on its (shared) UNet after ε_φ trained.
            using var eps = prior.PredictNoise(new NoiseQuery(v["__input__.sample"], v["__input__.timestep"].to(ScalarType.Int64), v["__input__.encoder_hidden_states"]));
            TensorAssert.Close(eps, v["__output__.sample"], 1e-4, 1e-4, "prior output with the adapter attached but disabled");
        }
        finally { foreach (var x in v.Values) x.Dispose(); }
    }

    [Fact]
    public void AsdStepWithTheRealAsdDistillerReachesTheRgb()
    {
        using var dir = new TempDir();
        StableDiffusionPriorTests.WriteTinyFolder(dir.Path);
        using var prior = StableDiffusionPrior.FromPretrained(dir.Path);
        var asd = new AsdDistiller(prior, AsdOptions.ScaleDreamerStableDiffusion, new Generator(3));
        using var cams = DistillerTestKit.Cameras(new double[] { 0, 120 }, new double[] { 20, 40 });
        using var scope = NewDisposeScope();
        var rgb = rand(new long[] { 2, 3, 32, 32 }, generator: new Generator(5)).requires_grad_(true);
        var r = asd.Distill(DistillerTestKit.Input(rgb, Prompt, cams, new TrainingProgress(10, 100)));
        output.WriteLine($"ASD: loss {r.Loss.item<float>():G4}, |g| {r.Diagnostics.GradientNorm:G4}, t {string.Join(",", r.Diagnostics.Timesteps)}, Δt {string.Join(",", r.Diagnostics.TimestepShifts)}");
        TensorAssert.AllFinite(r.Gradient, "ASD gradient");
        r.Loss.backward();
        rgb.grad.Should().NotBeNull();
        TensorAssert.AllFinite(rgb.grad!, "rgb gradient");
        double norm = rgb.grad!.norm().item<float>();
        output.WriteLine($"|grad rgb| {norm:G4}");
        norm.Should().BeGreaterThan(0);
    }

    [Fact]
    public void ParticleFromASeparateFolderReadsItsPredictionTypeAndChecksTheSchedule()
    {
        using var dir = new TempDir();
        StableDiffusionPriorTests.WriteTinyFolder(dir.Path);
        using var vDir = new TempDir();
        StableDiffusionPriorTests.WriteTinyFolder(vDir.Path, "v_prediction");
        using var prior = StableDiffusionPrior.FromPretrained(dir.Path);
        using (var particle = StableDiffusionParticleModel.FromPretrained(vDir.Path, prior))
        {
            particle.PredictionType.Should().Be(PredictionType.VPrediction);
            particle.Unet.Should().NotBeSameAs(prior.Unet);
            particle.LatentShape.Should().Be(prior.LatentShape);
        }
        File.WriteAllText(Path.Combine(vDir.Path, "scheduler", "scheduler_config.json"),
            """{"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "v_prediction"}""");
        FluentActions.Invoking(() => StableDiffusionParticleModel.FromPretrained(vDir.Path, prior)).Should().Throw<ArgumentException>().WithMessage("*different β schedule*");
    }
}
