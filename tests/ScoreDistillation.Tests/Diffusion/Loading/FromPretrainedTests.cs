using FluentAssertions;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static ScoreDistillation.Tests.Diffusion.Loading.SafetensorsTestFiles;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Loading;

/// <summary><c>FromPretrained</c> on a diffusers folder layout (model root with unet/ and vae/ subfolders).</summary>
public sealed class FromPretrainedTests
{
    /// <summary>Writes &lt;root&gt;/&lt;sub&gt;/config.json and diffusion_pytorch_model[.variant].safetensors from a test vector file.</summary>
    internal static void WriteComponent(string root, string sub, string vectorName, ScalarType? storeAs = null, string? variant = null)
    {
        string folder = Path.Combine(root, sub);
        Directory.CreateDirectory(folder);
        using (var json = TestVectors.LoadJson("diffusers", $"{vectorName}.json"))
            File.WriteAllText(Path.Combine(folder, "config.json"), json.RootElement.GetProperty("config").GetRawText());
        var all = TestVectors.LoadSafetensors("diffusers", $"{vectorName}.safetensors");
        try
        {
            var items = all.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)).Select(kv =>
            {
                if (storeAs is not ScalarType st) return From(kv.Key, kv.Value);
                using var c = kv.Value.to(st);
                return From(kv.Key, c);
            }).ToList();
            string name = variant is null ? "diffusion_pytorch_model.safetensors" : $"diffusion_pytorch_model.{variant}.safetensors";
            Write(Path.Combine(folder, name), items);
        }
        finally
        {
            foreach (var t in all.Values) t.Dispose();
        }
    }

    [Fact]
    public void UNetFromPretrainedReproducesTheReferenceOutput()
    {
        using var dir = new TempDir();
        WriteComponent(dir.Path, "unet", "unet_sd21_tiny");
        using var unet = UNet2DConditionModel.FromPretrained(dir.Path);
        unet.training.Should().BeFalse();
        unet.Config.UseLinearProjection.Should().BeTrue();
        unet.Config.AttentionHeadDim.Should().Equal(4, 6, 6);
        var v = TestVectors.LoadSafetensors("diffusers", "unet_sd21_tiny.safetensors");
        try
        {
            using var _ = no_grad();
            using var result = unet.forward(v["__input__.sample"], v["__input__.timestep"], v["__input__.encoder_hidden_states"]);
            TensorAssert.Close(result, v["__output__.sample"], 1e-4, 1e-4);
        }
        finally { foreach (var t in v.Values) t.Dispose(); }
    }

    [Fact]
    public void VaeFromPretrainedFp16VariantIntoFloat64()
    {
        using var dir = new TempDir();
        WriteComponent(dir.Path, "vae", "vae_tiny", ScalarType.Float16, "fp16");
        // The component folder itself is accepted too.
        using var vae = AutoencoderKL.FromPretrained(Path.Combine(dir.Path, "vae"), ScalarType.Float64, variant: "fp16");
        vae.parameters().Should().OnlyContain(p => p.dtype == ScalarType.Float64);
        vae.ScalingFactor.Should().Be(0.18215);
        var v = TestVectors.LoadSafetensors("diffusers", "vae_tiny.safetensors");
        try
        {
            using var _ = no_grad();
            using var latent = v["__input__.latent"].to(ScalarType.Float64);
            using var decoded = vae.Decode(latent);
            // fp16-rounded weights: close to the fp32 reference but not equal.
            TensorAssert.Close(decoded, v["__output__.decoded"], 0, 0.05);
        }
        finally { foreach (var t in v.Values) t.Dispose(); }
    }
}
