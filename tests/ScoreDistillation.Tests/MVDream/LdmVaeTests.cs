using FluentAssertions;
using ScoreDistillation.Diffusion.MVDream;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.MVDream;

public class LdmVaeTests
{
    internal static readonly AutoencoderKLConfig Tiny = new()
    {
        BlockOutChannels = new[] { 32, 64 },
        DownBlockTypes = new[] { "DownEncoderBlock2D", "DownEncoderBlock2D" },
        UpBlockTypes = new[] { "UpDecoderBlock2D", "UpDecoderBlock2D" },
        LayersPerBlock = 1,
        LatentChannels = 4,
        NormNumGroups = 32,
        SampleSize = 32,
    };

    [Fact]
    public void LDM_named_VAE_loads_through_the_key_map_and_matches_MVDream()
    {
        var v = TestVectors.LoadSafetensors("mvdream", "ldm_vae_tiny.safetensors");
        using var vae = MVDreamCheckpoint.LoadVae(v, Tiny, "ldm_vae_tiny");
        using var _ = no_grad();
        var posterior = vae.Encode(v["input.image"]);
        TensorAssert.Close(posterior.Mean, v["output.posterior_mean"], rtol: 1e-4, atol: 1e-4, because: "posterior mean");
        TensorAssert.Close(posterior.LogVar, v["output.posterior_logvar"], rtol: 1e-4, atol: 1e-4, because: "posterior logvar");
        TensorAssert.Close(vae.Decode(v["input.latent"]), v["output.decode"], rtol: 1e-4, atol: 1e-4, because: "decode");
        TensorAssert.Close(vae.Decode(v["output.posterior_mean"]), v["output.decode_posterior_mode"], rtol: 1e-4, atol: 1e-4, because: "decode mode");
        foreach (var t in v.Values) t.Dispose();
    }

    [Fact]
    public void Pickled_LDM_checkpoint_round_trips_and_the_text_tower_is_ignored()
    {
        var unetVectors = MultiViewUNetTests.Vectors();
        var vaeVectors = TestVectors.LoadSafetensors("mvdream", "ldm_vae_tiny.safetensors");
        var all = new Dictionary<string, Tensor>(MultiViewUNetTests.WeightsWithCheckpointPrefix(unetVectors));
        foreach (var (k, t) in vaeVectors) if (k.StartsWith(LdmKeyMap.VaePrefix, StringComparison.Ordinal)) all[k] = t;
        all["cond_stage_model.model.token_embedding.weight"] = ones(10, 4);
        all["alphas_cumprod"] = ones(1000);
        string dir = Directory.CreateTempSubdirectory("mvdream").FullName;
        try
        {
            string path = Path.Combine(dir, "tiny-4view.pt");
            PyTorchPickler.PickleStateDict(path, all);
            var read = MVDreamCheckpoint.Read(path);
            read.Should().HaveCount(all.Count);
            using var unet = MVDreamCheckpoint.LoadUNet(read, MultiViewUNetTests.Tiny, path);
            using var vae = MVDreamCheckpoint.LoadVae(read, Tiny, path);
            using var _ = no_grad();
            TensorAssert.Close(unet.Forward(unetVectors["__input__.x"], unetVectors["__input__.timesteps"], unetVectors["__input__.context"], unetVectors["__input__.camera"], 4),
                unetVectors["__output__.out"], rtol: 1e-4, atol: 1e-4);
            TensorAssert.Close(vae.Encode(vaeVectors["input.image"]).Mean, vaeVectors["output.posterior_mean"], rtol: 1e-4, atol: 1e-4);
            foreach (var t in read.Values) t.Dispose();
        }
        finally
        {
            Directory.Delete(dir, true);
            foreach (var t in unetVectors.Values) t.Dispose();
            foreach (var t in vaeVectors.Values) t.Dispose();
        }
    }

    [Fact]
    public void A_missing_checkpoint_file_names_the_path()
    {
        var act = () => MVDreamCheckpoint.Read("/nonexistent/sd-v2.1-base-4view.pt");
        act.Should().Throw<FileNotFoundException>().WithMessage("*/nonexistent/sd-v2.1-base-4view.pt*");
    }
}
