using FluentAssertions;
using ScoreDistillation.Diffusion.StableDiffusion;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Diffusion.Loading;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static ScoreDistillation.Tests.Diffusion.Loading.SafetensorsTestFiles;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.StableDiffusion;

/// <summary><see cref="StableDiffusionPrior"/> on a tiny diffusers folder assembled from the test vectors (SD 1.5-style UNet, tiny CLIP, tiny VAE).</summary>
public sealed class StableDiffusionPriorTests(ITestOutputHelper output)
{
    /// <summary>Writes model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ into <paramref name="root"/>.</summary>
    internal static void WriteTinyFolder(string root, string predictionType = "epsilon")
    {
        FromPretrainedTests.WriteComponent(root, "unet", "unet_sd15_tiny");
        FromPretrainedTests.WriteComponent(root, "vae", "vae_tiny");
        string text = Path.Combine(root, "text_encoder");
        Directory.CreateDirectory(text);
        using (var json = TestVectors.LoadJson("clip", "clip_text_tiny_quickgelu.json"))
            File.WriteAllText(Path.Combine(text, "config.json"), json.RootElement.GetProperty("config").GetRawText());
        var clip = TestVectors.LoadSafetensors("clip", "clip_text_tiny_quickgelu.safetensors");
        try
        {
            Write(Path.Combine(text, "model.safetensors"), clip.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)).Select(kv => From(kv.Key, kv.Value)));
        }
        finally { foreach (var t in clip.Values) t.Dispose(); }
        string tok = Path.Combine(root, "tokenizer");
        Directory.CreateDirectory(tok);
        File.Copy(TestVectors.PathOf("clip", "vocab.json"), Path.Combine(tok, "vocab.json"));
        File.Copy(TestVectors.PathOf("clip", "merges.txt"), Path.Combine(tok, "merges.txt"));
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"),
            $$"""{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "{{predictionType}}", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1}""");
        File.WriteAllText(Path.Combine(root, "model_index.json"), """
            {"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
            """);
    }

    [Fact]
    public void PredictNoiseIsTheReferenceUNetOutputAndVPredictionConvertsToEpsilon()
    {
        using var dir = new TempDir();
        WriteTinyFolder(dir.Path);
        var v = TestVectors.LoadSafetensors("diffusers", "unet_sd15_tiny.safetensors");
        try
        {
            using var t = v["__input__.timestep"].to(ScalarType.Int64);
            using (var prior = StableDiffusionPrior.FromPretrained(dir.Path))
            {
                prior.ImageSize.Should().Be(32);
                prior.LatentShape.Should().Be(new LatentShape(4, 16, 16));
                prior.PredictionType.Should().Be(PredictionType.Epsilon);
                using var eps = prior.PredictNoise(new NoiseQuery(v["__input__.sample"], t, v["__input__.encoder_hidden_states"]));
                output.WriteLine($"prior ε vs diffusers UNet: max abs err {TensorAssert.MaxAbsError(eps, v["__output__.sample"]):E2}");
                TensorAssert.Close(eps, v["__output__.sample"], 1e-4, 1e-4);
            }
            using (var prior = StableDiffusionPrior.FromPretrained(dir.Path, new StableDiffusionPriorOptions { PredictionType = PredictionType.VPrediction }))
            {
                using var eps = prior.PredictNoise(new NoiseQuery(v["__input__.sample"], t, v["__input__.encoder_hidden_states"]));
                using var expected = prior.Schedule.EpsilonFromVelocity(v["__input__.sample"], v["__output__.sample"], t);
                TensorAssert.Close(eps, expected, 1e-4, 1e-4, "v → ε");
            }
        }
        finally { foreach (var x in v.Values) x.Dispose(); }
    }

    [Fact]
    public void SdsStepRunsEndToEndAndTheGradientReachesTheRgb()
    {
        using var dir = new TempDir();
        WriteTinyFolder(dir.Path);
        using var prior = StableDiffusionPrior.FromPretrained(dir.Path);
        prior.Schedule.AlphaBar(500).Should().BeApproximately(0.27633268, 1e-6);

        using var text = prior.EncodeText(new[] { "a photo of a red cat", "" });
        text.Tokens.shape.Should().Equal(2, 77, 32);
        text.Pooled.shape.Should().Equal(2, 32);
        using (var again = prior.EncodeText(new[] { "", "a photo of a red cat" }))
            TensorAssert.Close(again.Tokens[1], text.Tokens[0], 0, 0, "cached prompt embedding");

        // A 16×16 "render" is resized to the 32×32 working resolution inside EncodeImages.
        using var rgb = rand(new long[] { 1, 3, 16, 16 }, generator: new Generator(5)).requires_grad_(true);
        using var scope = NewDisposeScope();
        var latents = prior.EncodeImages(rgb, new Generator(11));
        latents.shape.Should().Equal(1, 4, 16, 16);
        latents.requires_grad.Should().BeTrue();

        var t = tensor(new long[] { 500 });
        var noise = randn(latents.shape, generator: new Generator(13));
        var noisy = prior.Schedule.AddNoise(latents.detach(), noise, t);
        var eps = prior.PredictNoise(new NoiseQuery(cat(new[] { noisy, noisy }), cat(new[] { t, t }), text.Tokens));
        eps.requires_grad.Should().BeFalse();
        var chunks = eps.chunk(2);
        var guided = chunks[1] + 7.5 * (chunks[0] - chunks[1]);
        var grad = (1 - prior.Schedule.AlphaBar(500)) * (guided - noise);
        var target = (latents - grad).detach();
        var loss = 0.5 * (latents - target).square().sum();
        loss.backward();
        rgb.grad.Should().NotBeNull();
        TensorAssert.AllFinite(rgb.grad!, "rgb gradient");
        double norm = rgb.grad!.norm().item<float>();
        output.WriteLine($"SDS: |grad latents| {grad.norm().item<float>():G4}, |grad rgb| {norm:G4}");
        norm.Should().BeGreaterThan(0);

        using var decoded = prior.DecodeLatents(latents.detach());
        decoded.shape.Should().Equal(1, 3, 32, 32);
        decoded.min().item<float>().Should().BeGreaterThanOrEqualTo(0f);
        decoded.max().item<float>().Should().BeLessThanOrEqualTo(1f);
    }

    [Fact]
    public void PriorCallsLeaveNoLiveTensorsBehind()
    {
        using var dir = new TempDir();
        WriteTinyFolder(dir.Path);
        using var prior = StableDiffusionPrior.FromPretrained(dir.Path);
        using var rgb = rand(new long[] { 1, 3, 32, 32 }, generator: new Generator(5));
        using var t = tensor(new long[] { 250 });
        using (prior.EncodeText(new[] { "warm-up" })) { }
        long before = LiveTensors.Count;
        using (var text = prior.EncodeText(new[] { "warm-up" }))
        using (var latents = prior.EncodeImages(rgb, new Generator(1)))
        using (var eps = prior.PredictNoise(new NoiseQuery(latents, t, text.Tokens)))
        using (var decoded = prior.DecodeLatents(latents)) { }
        LiveTensors.Count.Should().Be(before);
    }

    [Fact]
    public void SamplePredictionIsRejectedWithAClearMessage()
    {
        using var dir = new TempDir();
        WriteTinyFolder(dir.Path, "sample");
        FluentActions.Invoking(() => StableDiffusionPrior.FromPretrained(dir.Path)).Should().Throw<NotSupportedException>()
            .WithMessage("*prediction_type 'sample'*scheduler_config.json*epsilon or v_prediction*");
        using var ok = new TempDir();
        WriteTinyFolder(ok.Path);
        FluentActions.Invoking(() => StableDiffusionPrior.FromPretrained(ok.Path, new StableDiffusionPriorOptions { PredictionType = PredictionType.Sample }))
            .Should().Throw<NotSupportedException>().WithMessage("*prediction_type 'sample'*");
    }

    [Fact]
    public void TextCacheIsBoundedAndTheScheduleComesFromTheSchedulerConfig()
    {
        using var dir = new TempDir();
        WriteTinyFolder(dir.Path, "v_prediction");
        using var prior = StableDiffusionPrior.FromPretrained(dir.Path, new StableDiffusionPriorOptions { TextCacheCapacity = 2 });
        prior.PredictionType.Should().Be(PredictionType.VPrediction);
        var expected = new ScoreDistillation.Diffusion.Schedulers.DdpmScheduler(ScoreDistillation.Diffusion.Schedulers.SchedulerConfig.StableDiffusion()).Schedule;
        prior.Schedule.AlphaBar(0).Should().Be(expected.AlphaBar(0));
        prior.Schedule.AlphaBar(999).Should().Be(expected.AlphaBar(999));
        using var first = prior.EncodeText(new[] { "a", "b", "c" });
        prior.TextEncoder.CachedCount.Should().Be(2);
        using var again = prior.EncodeText(new[] { "a" });
        TensorAssert.Close(again.Tokens[0], first.Tokens[0], 0, 0, "re-encoded after eviction");
        prior.TextEncoder.CachedCount.Should().Be(2);
    }

    [Fact]
    public void MissingModelIndexIsNamed()
    {
        using var dir = new TempDir();
        FluentActions.Invoking(() => StableDiffusionPrior.FromPretrained(dir.Path)).Should().Throw<FileNotFoundException>()
            .WithMessage($"*{Path.Combine(dir.Path, "model_index.json")}*");
    }
}
