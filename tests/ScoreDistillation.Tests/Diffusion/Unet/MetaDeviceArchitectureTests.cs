using FluentAssertions;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Unet;

/// <summary>The real SD 1.5 / SD 2.1-base UNet and VAE built on the meta device: parameter counts, key names and shapes of the diffusers layout.</summary>
public sealed class MetaDeviceArchitectureTests(ITestOutputHelper output)
{
    static Dictionary<string, long[]> Shapes(nn.Module m) => m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
    static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    [Fact]
    public void StableDiffusion15UNetHasTheDiffusersLayout()
    {
        using var unet = new UNet2DConditionModel(UNet2DConditionConfig.StableDiffusion15, device("meta"));
        long count = Count(unet);
        var shapes = Shapes(unet);
        output.WriteLine($"SD 1.5 UNet: {count:N0} parameters, {shapes.Count} state_dict keys");
        count.Should().Be(859_520_964);
        shapes.Should().HaveCount(686);
        shapes["conv_in.weight"].Should().Equal(320, 4, 3, 3);
        shapes["time_embedding.linear_1.weight"].Should().Equal(1280, 320);
        shapes["time_embedding.linear_2.weight"].Should().Equal(1280, 1280);
        shapes["down_blocks.0.resnets.0.time_emb_proj.weight"].Should().Equal(320, 1280);
        shapes["down_blocks.0.attentions.0.norm.weight"].Should().Equal(320);
        shapes["down_blocks.0.attentions.0.proj_in.weight"].Should().Equal(320, 320, 1, 1);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"].Should().Equal(320, 320);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].Should().Equal(320, 768);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias"].Should().Equal(320);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"].Should().Equal(2560, 320);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight"].Should().Equal(320, 1280);
        shapes["down_blocks.0.downsamplers.0.conv.weight"].Should().Equal(320, 320, 3, 3);
        shapes["down_blocks.1.resnets.0.conv_shortcut.weight"].Should().Equal(640, 320, 1, 1);
        shapes["mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight"].Should().Equal(1280, 1280);
        shapes["mid_block.resnets.1.conv2.weight"].Should().Equal(1280, 1280, 3, 3);
        shapes["up_blocks.0.resnets.0.conv1.weight"].Should().Equal(1280, 2560, 3, 3);
        shapes["up_blocks.0.upsamplers.0.conv.weight"].Should().Equal(1280, 1280, 3, 3);
        shapes["up_blocks.1.attentions.2.proj_out.weight"].Should().Equal(1280, 1280, 1, 1);
        shapes["up_blocks.3.resnets.2.conv_shortcut.weight"].Should().Equal(320, 640, 1, 1);
        shapes["conv_norm_out.weight"].Should().Equal(320);
        shapes["conv_out.weight"].Should().Equal(4, 320, 3, 3);
        shapes.Keys.Should().NotContain(k => k.Contains("to_q.bias") || k.Contains("up_blocks.3.upsamplers") || k.Contains("down_blocks.3.downsamplers"));
    }

    [Fact]
    public void StableDiffusion21BaseUNetHasTheDiffusersLayout()
    {
        using var unet = new UNet2DConditionModel(UNet2DConditionConfig.StableDiffusion21Base, device("meta"));
        long count = Count(unet);
        var shapes = Shapes(unet);
        output.WriteLine($"SD 2.1-base UNet: {count:N0} parameters, {shapes.Count} state_dict keys");
        count.Should().Be(865_910_724);
        shapes.Should().HaveCount(686);
        shapes["down_blocks.0.attentions.0.proj_in.weight"].Should().Equal(320, 320);
        shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].Should().Equal(320, 1024);
        shapes["down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v.weight"].Should().Equal(1280, 1024);
        shapes["mid_block.attentions.0.proj_out.weight"].Should().Equal(1280, 1280);
        shapes["up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"].Should().Equal(2560, 320);
        // [5, 10, 20, 20] heads: head dim 64 everywhere.
        var attn = ((ScoreDistillation.Diffusion.Blocks.CrossAttnDownBlock2D)unet.down_blocks[2]).FirstTransformerBlock.attn1;
        attn.Heads.Should().Be(20);
        attn.HeadDim.Should().Be(64);
    }

    [Fact]
    public void StableDiffusionVaeHasTheDiffusersLayout()
    {
        using var vae = new AutoencoderKL(AutoencoderKLConfig.StableDiffusion15, device("meta"));
        long count = Count(vae);
        var shapes = Shapes(vae);
        output.WriteLine($"SD VAE: {count:N0} parameters, {shapes.Count} state_dict keys");
        count.Should().Be(83_653_863);
        shapes.Should().HaveCount(248);
        vae.DownsampleFactor.Should().Be(8);
        shapes["encoder.conv_in.weight"].Should().Equal(128, 3, 3, 3);
        shapes["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"].Should().Equal(256, 128, 1, 1);
        shapes["encoder.down_blocks.0.downsamplers.0.conv.weight"].Should().Equal(128, 128, 3, 3);
        shapes["encoder.mid_block.attentions.0.group_norm.weight"].Should().Equal(512);
        shapes["encoder.mid_block.attentions.0.to_q.weight"].Should().Equal(512, 512);
        shapes["encoder.mid_block.attentions.0.to_out.0.bias"].Should().Equal(512);
        shapes["encoder.conv_out.weight"].Should().Equal(8, 512, 3, 3);
        shapes["quant_conv.weight"].Should().Equal(8, 8, 1, 1);
        shapes["post_quant_conv.weight"].Should().Equal(4, 4, 1, 1);
        shapes["decoder.conv_in.weight"].Should().Equal(512, 4, 3, 3);
        shapes["decoder.up_blocks.0.resnets.2.conv2.weight"].Should().Equal(512, 512, 3, 3);
        shapes["decoder.up_blocks.2.resnets.0.conv_shortcut.weight"].Should().Equal(256, 512, 1, 1);
        shapes["decoder.up_blocks.2.upsamplers.0.conv.weight"].Should().Equal(256, 256, 3, 3);
        shapes["decoder.conv_out.weight"].Should().Equal(3, 128, 3, 3);
    }
}
