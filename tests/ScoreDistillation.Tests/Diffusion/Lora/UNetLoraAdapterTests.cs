using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Lora;
using ScoreDistillation.Diffusion.StableDiffusion;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Diffusion.Loading;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static ScoreDistillation.Tests.Diffusion.Loading.SafetensorsTestFiles;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Lora;

/// <summary><see cref="UNetLoraAdapter"/> and <see cref="StableDiffusionParticleModel"/> on the tiny SD 1.5-style UNet of the test vectors.</summary>
public sealed class UNetLoraAdapterTests(ITestOutputHelper output) : IDisposable
{
    readonly TempDir _dir = NewUNetFolder();
    readonly Dictionary<string, Tensor> _v = TestVectors.LoadSafetensors("diffusers", "unet_sd15_tiny.safetensors");

    static TempDir NewUNetFolder()
    {
        var dir = new TempDir();
        FromPretrainedTests.WriteComponent(dir.Path, "unet", "unet_sd15_tiny");
        return dir;
    }

    UNet2DConditionModel LoadUNet() => UNet2DConditionModel.FromPretrained(_dir.Path);

    Tensor Sample => _v["__input__.sample"];
    Tensor Text => _v["__input__.encoder_hidden_states"];
    Tensor Timesteps => _v["__input__.timestep"].to(ScalarType.Int64);

    static Tensor Cameras(long n, ulong seed) => randn(new long[] { n, 16 }, generator: new Generator(seed));

    public void Dispose()
    {
        foreach (var t in _v.Values) t.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public void ZeroInitialisedAdapterLeavesTheUNetOutputUnchanged()
    {
        using var scope = NewDisposeScope();
        using var unet = LoadUNet();
        using var _ = no_grad();
        var baseline = unet.Forward(Sample, Timesteps, Text);
        TensorAssert.Close(baseline, _v["__output__.sample"], 1e-4, 1e-4, "base UNet parity");
        using var adapter = new UNetLoraAdapter(unet, new LoraOptions { Seed = 3 });
        // 2 + 2 down, 1 mid, 3 + 3 up transformer blocks, attn1 + attn2 each.
        adapter.ProcessorNames.Should().HaveCount(22);
        adapter.ProcessorNames.Should().Contain("down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor");
        adapter.ProcessorNames.Should().Contain("mid_block.attentions.0.transformer_blocks.0.attn2.processor");
        var ups = adapter.NamedParameters.Where(kv => kv.Key.EndsWith(".up.weight", StringComparison.Ordinal)).Select(kv => kv.Value).ToList();
        var downs = adapter.NamedParameters.Where(kv => kv.Key.EndsWith(".down.weight", StringComparison.Ordinal)).Select(kv => kv.Value).ToList();
        ups.Should().HaveCount(88).And.OnlyContain(p => p.abs().max().item<float>() == 0f);
        var allDown = cat(downs.Select(d => d.flatten()).ToArray());
        double std = allDown.std().item<float>();
        output.WriteLine($"down weights: {allDown.numel()} values, std {std:F4} (expected 1/r = 0.25)");
        std.Should().BeApproximately(0.25, 0.01);

        adapter.Enabled = true;
        var adapted = unet.Forward(Sample, Timesteps, Text);
        TensorAssert.Close(adapted, baseline, 0, 0, "up = 0 makes the adapted UNet the base UNet exactly");

        // The hook is live: non-zero up weights change the output only while the adapter is enabled.
        foreach (var u in ups) u.normal_(0, 0.05, new Generator(9));
        var changed = unet.Forward(Sample, Timesteps, Text);
        double diff = (changed - baseline).abs().max().item<float>();
        output.WriteLine($"with up ~ N(0, 0.05²): max |Δε| = {diff:E3}");
        diff.Should().BeGreaterThan(1e-3);
        adapter.Enabled = false;
        TensorAssert.Close(unet.Forward(Sample, Timesteps, Text), baseline, 0, 0, "disabled adapter = base UNet");
        adapter.Detach();
        adapter.Enabled = true;
        TensorAssert.Close(unet.Forward(Sample, Timesteps, Text), baseline, 0, 0, "detached adapter = base UNet");
    }

    [Fact]
    public void OnlyAdapterAndCameraParametersReceiveGradients()
    {
        using var scope = NewDisposeScope();
        using var particle = new StableDiffusionParticleModel(LoadUNet(), PredictionType.Epsilon, new LatentShape(4, 16, 16), new LoraOptions { Seed = 1 });
        particle.TrainableParameters.Should().HaveCount(88 * 2 + 4);
        particle.Adapter.CameraParameterCount.Should().Be(16 * 128 + 128 + 128 * 128 + 128);
        var pred = particle.Predict(Sample, Timesteps, Text, Cameras(2, 4));
        pred.requires_grad.Should().BeTrue();
        pred.square().mean().backward();
        particle.Unet.parameters().Where(p => p.requires_grad || p.grad is not null).Should().BeEmpty("the base UNet is frozen");
        particle.Adapter.Enabled.Should().BeFalse("the adapter is enabled only inside Predict");
        foreach (var (name, p) in particle.Adapter.NamedParameters)
        {
            p.grad.Should().NotBeNull(name);
            TensorAssert.AllFinite(p.grad!, name);
            double norm = p.grad!.norm().item<float>();
            if (name.EndsWith(".up.weight", StringComparison.Ordinal) || name.StartsWith("class_embedding.", StringComparison.Ordinal))
                norm.Should().BeGreaterThan(0, name);
            else
                norm.Should().Be(0, $"{name}: with up = 0 the down weights get no gradient yet");
        }
    }

    [Fact]
    public void SaveThenLoadRestoresTheAdapterExactly()
    {
        using var scope = NewDisposeScope();
        string file = _dir["lora/particle.safetensors"];
        using var a = new StableDiffusionParticleModel(LoadUNet(), PredictionType.Epsilon, new LatentShape(4, 16, 16), new LoraOptions { Seed = 1 });
        using (no_grad())
            foreach (var p in a.TrainableParameters) p.add_(randn(p.shape, generator: new Generator(7)) * 0.05);
        a.Save(file);
        var keys = CheckpointLoader.ReadStateDict(file);
        keys.Keys.Should().Contain("down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight")
            .And.Contain("up_blocks.2.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight")
            .And.Contain("class_embedding.linear_2.bias").And.HaveCount(a.TrainableParameters.Count);
        foreach (var t in keys.Values) t.Dispose();

        using var b = new StableDiffusionParticleModel(LoadUNet(), PredictionType.Epsilon, new LatentShape(4, 16, 16), new LoraOptions { Seed = 2 });
        b.Load(file);
        foreach (var (name, p) in a.Adapter.NamedParameters)
            TensorAssert.Close(b.Adapter.NamedParameters[name], p, 0, 0, name);
        using var _ = no_grad();
        var cams = Cameras(2, 5);
        TensorAssert.Close(b.Predict(Sample, Timesteps, Text, cams), a.Predict(Sample, Timesteps, Text, cams), 0, 0, "loaded particle predicts the same");
    }

    [Fact]
    public void LoadingAMismatchedFileNamesTheKeysAndShapes()
    {
        string file = _dir["rank4.safetensors"];
        using (var unet = LoadUNet())
        using (var a = new UNetLoraAdapter(unet))
            a.Save(file);
        using var unet2 = LoadUNet();
        using (var rank8 = new UNetLoraAdapter(unet2, new LoraOptions { Rank = 8 }))
        {
            var e = FluentActions.Invoking(() => rank8.Load(file)).Should().Throw<CheckpointException>().Which;
            output.WriteLine(e.Message);
            e.Message.Should().Contain(file).And.Contain("down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight: file [4, 32] vs adapter [8, 32]");
            e.ShapeMismatches.Should().HaveCount(176);
        }
        using (var noCamera = new UNetLoraAdapter(unet2, new LoraOptions { CameraEmbedding = false }))
        {
            var e = FluentActions.Invoking(() => noCamera.Load(file)).Should().Throw<CheckpointException>().Which;
            e.UnexpectedKeys.Should().BeEquivalentTo("class_embedding.linear_1.weight", "class_embedding.linear_1.bias", "class_embedding.linear_2.weight", "class_embedding.linear_2.bias");
            e.Message.Should().Contain("unexpected keys (4)");
            FluentActions.Invoking(() => noCamera.Load(_dir["absent.safetensors"])).Should().Throw<FileNotFoundException>().WithMessage("*absent.safetensors*");
            FluentActions.Invoking(() => new UNetLoraAdapter(unet2)).Should().Throw<InvalidOperationException>().WithMessage("*already has a processor*");
        }
        using var again = new UNetLoraAdapter(unet2);
        again.ProcessorNames.Should().HaveCount(22, "disposing an adapter detaches it, so another can attach");
    }

    [Fact]
    public void CameraConditioningIsLiveAndPredictLeavesNoTensorsBehind()
    {
        using var particle = new StableDiffusionParticleModel(LoadUNet(), PredictionType.VPrediction, new LatentShape(4, 16, 16), new LoraOptions { Seed = 4 });
        using var cams = Cameras(2, 6);
        using var none = zeros(2, 16);
        using var t = Timesteps;
        using var _ = no_grad();
        using (particle.Predict(Sample, t, Text, cams)) { }
        long before = LiveTensors.Count;
        using (var withCamera = particle.Predict(Sample, t, Text, cams))
        using (var withoutCamera = particle.Predict(Sample, t, Text, none))
        using (NewDisposeScope())
        {
            double diff = (withCamera - withoutCamera).abs().max().item<float>();
            output.WriteLine($"max |ε_φ(c) − ε_φ(0)| = {diff:E3}");
            diff.Should().BeGreaterThan(1e-4, "the camera MLP output is added to the time embedding");
        }
        LiveTensors.Count.Should().Be(before);
        FluentActions.Invoking(() => particle.Predict(Sample, t, Text, zeros(2, 12))).Should().Throw<ArgumentException>().WithMessage("*[2, 16]*");
    }

    [Fact]
    public void StableDiffusion21BaseAdapterHasProlificDreamersSizes()
    {
        using var unet = new UNet2DConditionModel(UNet2DConditionConfig.StableDiffusion21Base, device("meta"));
        using var adapter = new UNetLoraAdapter(unet);
        output.WriteLine($"SD 2.1-base: {adapter.ProcessorNames.Count} processors, LoRA {adapter.LoraParameterCount:N0}, camera MLP {adapter.CameraParameterCount:N0}");
        adapter.ProcessorNames.Should().HaveCount(32);
        adapter.LoraParameterCount.Should().Be(829_952, "56·Σh + 8·1024·16 with Σh = 12480 at rank 4");
        adapter.CameraParameterCount.Should().Be(1_661_440, "Linear(16, 1280) + Linear(1280, 1280)");
        var p = adapter.NamedParameters;
        p["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight"].shape.Should().Equal(4, 320);
        p["down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight"].shape.Should().Equal(4, 1024);
        p["mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight"].shape.Should().Equal(1280, 4);
        p["up_blocks.3.attentions.2.transformer_blocks.0.attn1.processor.to_v_lora.up.weight"].shape.Should().Equal(320, 4);
        p["class_embedding.linear_1.weight"].shape.Should().Equal(1280, 16);
    }
}
