using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static ScoreDistillation.Tests.Diffusion.Loading.SafetensorsTestFiles;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Loading;

/// <summary>Checkpoint formats, precisions and the error messages of <see cref="CheckpointLoader"/>.</summary>
public sealed class CheckpointLoaderTests
{
    static AutoencoderKLConfig TinyVaeConfig()
    {
        using var json = TestVectors.LoadJson("diffusers", "vae_tiny.json");
        return AutoencoderKLConfig.FromJson(json.RootElement.GetProperty("config").GetRawText());
    }

    /// <summary>The tiny VAE weights only (no __input__/__output__ tensors), in file order.</summary>
    static List<(string Key, Tensor Value)> VaeWeights()
    {
        var all = TestVectors.LoadSafetensors("diffusers", "vae_tiny.safetensors");
        var result = new List<(string, Tensor)>();
        foreach (var (k, t) in all)
        {
            if (k.StartsWith("__", StringComparison.Ordinal)) t.Dispose();
            else result.Add((k, t));
        }
        return result;
    }

    static void DisposeAll(IEnumerable<(string, Tensor)> items) { foreach (var (_, t) in items) t.Dispose(); }

    static void AssertWeightsEqual(nn.Module model, IEnumerable<(string Key, Tensor Value)> expected, ScalarType via)
    {
        var sd = model.state_dict();
        foreach (var (k, t) in expected)
        {
            using var want = t.to(via).to(ScalarType.Float32);
            sd[k].dtype.Should().Be(ScalarType.Float32);
            TensorAssert.Close(sd[k], want, 0, 0, k);
        }
    }

    [Fact]
    public void StrictLoadOfAnExactFileFillsEveryWeight()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            Write(dir["w.safetensors"], w.Select(x => From(x.Key, x.Value)));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var report = CheckpointLoader.Load(vae, dir["w.safetensors"]);
            report.LoadedKeys.Should().HaveCount(156);
            report.MissingKeys.Should().BeEmpty();
            AssertWeightsEqual(vae, w, ScalarType.Float32);
        }
        finally { DisposeAll(w); }
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfPrecisionSafetensorsLoadIntoAFloat32Module(ScalarType stored)
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            var items = w.Select(x => { using var h = x.Value.to(stored); return From(x.Key, h); }).ToList();
            items.Should().OnlyContain(i => i.DType == (stored == ScalarType.Float16 ? "F16" : "BF16"));
            Write(dir["w.safetensors"], items);
            using var vae = new AutoencoderKL(TinyVaeConfig());
            CheckpointLoader.Load(vae, dir["w.safetensors"]);
            AssertWeightsEqual(vae, w, stored);
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void ShardedSafetensorsWithAnIndexLoad()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            int half = w.Count / 2;
            Write(dir["diffusion_pytorch_model-00001-of-00002.safetensors"], w.Take(half).Select(x => From(x.Key, x.Value)));
            Write(dir["diffusion_pytorch_model-00002-of-00002.safetensors"], w.Skip(half).Select(x => From(x.Key, x.Value)));
            var map = w.Select((x, i) => (x.Key, File: i < half ? "diffusion_pytorch_model-00001-of-00002.safetensors" : "diffusion_pytorch_model-00002-of-00002.safetensors"))
                .ToDictionary(p => p.Key, p => p.File);
            File.WriteAllText(dir["diffusion_pytorch_model.safetensors.index.json"],
                System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var report = CheckpointLoader.LoadFromFolder(vae, dir.Path);
            report.Files.Should().HaveCount(2);
            AssertWeightsEqual(vae, w, ScalarType.Float32);
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void PyTorchBinCheckpointLoads()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            PyTorchPickler.PickleStateDict(dir["diffusion_pytorch_model.bin"], w.ToDictionary(x => x.Key, x => x.Value));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var report = CheckpointLoader.LoadFromFolder(vae, dir.Path);
            report.Files.Single().Should().EndWith(".bin");
            AssertWeightsEqual(vae, w, ScalarType.Float32);
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void TruncatedSafetensorsIsAClearError()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            Write(dir["w.safetensors"], w.Select(x => From(x.Key, x.Value)));
            var bytes = File.ReadAllBytes(dir["w.safetensors"]);
            File.WriteAllBytes(dir["cut.safetensors"], bytes[..(bytes.Length / 2)]);
            File.WriteAllBytes(dir["cut-header.safetensors"], bytes[..100]);
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var act = () => CheckpointLoader.Load(vae, dir["cut.safetensors"]);
            act.Should().Throw<CheckpointException>().WithMessage("*Truncated safetensors file*cut.safetensors*tensor '*' ends at byte*");
            var act2 = () => CheckpointLoader.Load(vae, dir["cut-header.safetensors"]);
            act2.Should().Throw<CheckpointException>().WithMessage("*cut-header.safetensors*header declares*");
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreNamed()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            using var extra = zeros(3);
            Write(dir["w.safetensors"], w.Where(x => x.Key != "decoder.conv_out.bias").Select(x => From(x.Key, x.Value)).Append(From("decoder.extra.weight", extra)));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var ex = FluentActions.Invoking(() => CheckpointLoader.Load(vae, dir["w.safetensors"])).Should().Throw<CheckpointException>().Which;
            ex.Message.Should().Contain("missing keys (1): decoder.conv_out.bias").And.Contain("unexpected keys (1): decoder.extra.weight");
            ex.MissingKeys.Should().Equal("decoder.conv_out.bias");
            ex.UnexpectedKeys.Should().Equal("decoder.extra.weight");
            ex.Path.Should().Be(dir["w.safetensors"]);

            // Not strict: the rest loads, the report lists what was skipped.
            var report = CheckpointLoader.Load(vae, dir["w.safetensors"], strict: false);
            report.MissingKeys.Should().Equal("decoder.conv_out.bias");
            report.UnexpectedKeys.Should().Equal("decoder.extra.weight");
            report.LoadedKeys.Should().HaveCount(155);
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void WrongShapeNamesExpectedAndFoundShapes()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            using var wrong = zeros(9);
            Write(dir["w.safetensors"], w.Select(x => x.Key == "quant_conv.bias" ? From(x.Key, wrong) : From(x.Key, x.Value)));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var ex = FluentActions.Invoking(() => CheckpointLoader.Load(vae, dir["w.safetensors"], strict: false)).Should().Throw<CheckpointException>().Which;
            ex.Message.Should().Contain("quant_conv.bias: expected [8], found [9]");
            ex.ShapeMismatches.Should().ContainSingle();
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void KeyMappingLoadsPrefixedCheckpoints()
    {
        using var dir = new TempDir();
        var w = VaeWeights();
        try
        {
            using var step = zeros(1);
            Write(dir["ldm.safetensors"], w.Select(x => From("first_stage_model." + x.Key, x.Value)).Append(From("global_step", step)));
            using var vae = new AutoencoderKL(TinyVaeConfig());
            var report = CheckpointLoader.Load(vae, dir["ldm.safetensors"], mapKey: k => k.StartsWith("first_stage_model.", StringComparison.Ordinal) ? k["first_stage_model.".Length..] : null);
            report.LoadedKeys.Should().HaveCount(156);
            AssertWeightsEqual(vae, w, ScalarType.Float32);
        }
        finally { DisposeAll(w); }
    }

    [Fact]
    public void UnsupportedDtypeIsNamed()
    {
        using var dir = new TempDir();
        Write(dir["w.safetensors"], new[] { new Item("quant_conv.bias", "F8_E4M3", new long[] { 8 }, new byte[8]) });
        using var vae = new AutoencoderKL(TinyVaeConfig());
        FluentActions.Invoking(() => CheckpointLoader.Load(vae, dir["w.safetensors"])).Should().Throw<CheckpointException>()
            .WithMessage("*Unsupported dtype 'F8_E4M3' for tensor 'quant_conv.bias'*w.safetensors*");
    }

    [Fact]
    public void MissingFilesNameThePathsLookedFor()
    {
        using var dir = new TempDir();
        using var vae = new AutoencoderKL(TinyVaeConfig());
        FluentActions.Invoking(() => CheckpointLoader.Load(vae, dir["nope.safetensors"])).Should().Throw<FileNotFoundException>()
            .WithMessage($"*{dir["nope.safetensors"]}*");
        FluentActions.Invoking(() => CheckpointLoader.LoadFromFolder(vae, dir.Path)).Should().Throw<FileNotFoundException>()
            .WithMessage($"*{dir["diffusion_pytorch_model.safetensors"]}*{dir["diffusion_pytorch_model.bin"]}*");
        FluentActions.Invoking(() => UNet2DConditionModel.FromPretrained(dir.Path)).Should().Throw<FileNotFoundException>()
            .WithMessage($"*{Path.Combine(dir.Path, "unet", "config.json")}*");
        FluentActions.Invoking(() => AutoencoderKL.FromPretrained(dir["missing-model"])).Should().Throw<DirectoryNotFoundException>()
            .WithMessage($"*{dir["missing-model"]}*");
        File.WriteAllText(dir["diffusion_pytorch_model.safetensors.index.json"], "{\"weight_map\": {\"quant_conv.bias\": \"shard-1.safetensors\"}}");
        FluentActions.Invoking(() => CheckpointLoader.LoadFromFolder(vae, dir.Path)).Should().Throw<FileNotFoundException>()
            .WithMessage($"*{dir["shard-1.safetensors"]}*");
    }
}
