using FluentAssertions;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Unet;

/// <summary>config.json parsing of real model configs and the extension hooks MVDream builds on (extra time embedding, multi-view attention).</summary>
public sealed class UNetConfigAndHooksTests
{
    // stabilityai/stable-diffusion-2-1-base unet/config.json (diffusers 0.10 era keys).
    const string Sd21BaseUNetJson = """
    {
      "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0",
      "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
      "center_input_sample": false, "cross_attention_dim": 1024,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
      "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
      "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4, "sample_size": 64,
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "use_linear_projection": true
    }
    """;

    // runwayml/stable-diffusion-v1-5 vae/config.json
    const string Sd15VaeJson = """
    {
      "_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
      "block_out_channels": [128, 256, 512, 512],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
      "sample_size": 512, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    }
    """;

    [Fact]
    public void RealConfigJsonParsesToThePresets()
    {
        var unet = UNet2DConditionConfig.FromJson(Sd21BaseUNetJson);
        unet.AttentionHeadDim.Should().Equal(5, 10, 20, 20);
        unet.OnlyCrossAttention.Should().Equal(false);
        unet.LayersPerBlock.Should().Equal(2);
        unet.CrossAttentionDim.Should().Equal(1024);
        unet.UpcastAttention.Should().BeFalse();
        var preset = UNet2DConditionConfig.StableDiffusion21Base;
        unet.ToJson().Should().Be(preset.ToJson());
        UNet2DConditionConfig.FromJson(preset.ToJson()).ToJson().Should().Be(preset.ToJson());

        var vae = AutoencoderKLConfig.FromJson(Sd15VaeJson);
        vae.ScalingFactor.Should().Be(0.18215);
        vae.ToJson().Should().Be(AutoencoderKLConfig.StableDiffusion15.ToJson());
    }

    [Fact]
    public void UnsupportedConfigFeaturesAreNamed()
    {
        var cfg = UNet2DConditionConfig.StableDiffusion15 with { AdditionEmbedType = "text_time" };
        FluentActions.Invoking(() => new UNet2DConditionModel(cfg, device("meta"))).Should().Throw<NotSupportedException>().WithMessage("*addition_embed_type*text_time*");
        var bad = UNet2DConditionConfig.StableDiffusion15 with { AttentionHeadDim = new[] { 5, 10 } };
        FluentActions.Invoking(() => new UNet2DConditionModel(bad, device("meta"))).Should().Throw<InvalidDataException>().WithMessage("*attention_head_dim*2 entries*4 blocks*");
    }

    [Fact]
    public void ExtraTimeEmbeddingAndMultiViewAttentionHooks()
    {
        using var unet = UNetParityTests.LoadTiny("unet_sd15_tiny", out var v);
        try
        {
            using var _ = no_grad();
            var x = v["__input__.sample"];
            var t = v["__input__.timestep"];
            var c = v["__input__.encoder_hidden_states"];
            using var baseline = unet.Forward(x, t, c);
            using (var zero = zeros(2, unet.TimeEmbeddingDim))
            using (var withZero = unet.Forward(x, t, c, addedTimeEmbedding: zero))
                TensorAssert.Close(withZero, baseline, 0, 0, "zero extra embedding is a no-op");
            using (var camera = randn(new long[] { 2, unet.TimeEmbeddingDim }, generator: new Generator(3)))
            using (var withCamera = unet.Forward(x, t, c, addedTimeEmbedding: camera))
                TensorAssert.MaxAbsError(withCamera, baseline).Should().BeGreaterThan(1e-3);

            // Two views of one sample: joint self-attention changes the result, but identical views attend
            // to a duplicated token set, which leaves softmax-weighted averages unchanged.
            using (var joint = unet.Forward(x, t, c, numFrames: 2))
                TensorAssert.MaxAbsError(joint, baseline).Should().BeGreaterThan(1e-4);
            using var x2 = x[..1].expand(2, -1, -1, -1).contiguous();
            using var t2 = t[..1].expand(2).contiguous();
            using var c2 = c[..1].expand(2, -1, -1).contiguous();
            using var single = unet.Forward(x2, t2, c2);
            using var twoViews = unet.Forward(x2, t2, c2, numFrames: 2);
            TensorAssert.Close(twoViews, single, 1e-5, 1e-5, "identical views");
            FluentActions.Invoking(() => unet.Forward(x, t, c, numFrames: 3)).Should().Throw<ArgumentException>().WithMessage("*numFrames 3*");
        }
        finally { foreach (var t in v.Values) t.Dispose(); }
    }
}
