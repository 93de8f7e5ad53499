using System.Text.RegularExpressions;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>One entry of an LDM ↔ diffusers key map.</summary>
/// <param name="ModelKey">Key in our module's state_dict (diffusers naming).</param>
/// <param name="CheckpointKey">Key in the LDM checkpoint.</param>
/// <param name="SqueezeConv1x1">The checkpoint stores a 1×1 convolution [C, C, 1, 1] where the module has a Linear [C, C] (LDM VAE attention).</param>
public sealed record LdmKeyMapping(string ModelKey, string CheckpointKey, bool SqueezeConv1x1);

/// <summary>
/// Maps between the original LDM (CompVis / openaimodel) parameter names used by MVDream's published checkpoints and our
/// diffusers-named modules. The map is derived from the module's own state_dict and configuration, so it covers any
/// configuration the modules can express; nothing is listed by hand.
/// </summary>
public static partial class LdmKeyMap
{
    /// <summary>Prefix of the UNet inside an MVDream / LDM checkpoint.</summary>
    public const string UNetPrefix = "model.diffusion_model.";

    /// <summary>Prefix of the VAE inside an MVDream / LDM checkpoint.</summary>
    public const string VaePrefix = "first_stage_model.";

    /// <summary>The map for every parameter of a <see cref="MultiViewUNet"/>.</summary>
    public static IReadOnlyList<LdmKeyMapping> ForMultiViewUNet(MultiViewUNet model, string prefix = UNetPrefix)
    {
        ArgumentNullException.ThrowIfNull(model);
        var cfg = model.UNet.Config;
        int layers = cfg.LayersPerBlock[0];
        if (cfg.LayersPerBlock.Any(l => l != layers))
            throw new NotSupportedException("LDM key map: the openaimodel layout needs the same num_res_blocks at every level.");
        var upHasAttention = cfg.UpBlockTypes.Select(t => t.StartsWith("CrossAttn", StringComparison.Ordinal)).ToArray();
        var result = new List<LdmKeyMapping>();
        foreach (var key in model.state_dict().Keys)
        {
            string ldm = key.StartsWith("unet.", StringComparison.Ordinal)
                ? UNetToLdm(key["unet.".Length..], layers, upHasAttention)
                : key; // camera_embed.* has the same name in MVDream
            result.Add(new LdmKeyMapping(key, prefix + ldm, false));
        }
        return result;
    }

    /// <summary>The map for every parameter of an <see cref="AutoencoderKL"/> (LDM <c>first_stage_model</c> layout).</summary>
    public static IReadOnlyList<LdmKeyMapping> ForAutoencoder(AutoencoderKL vae, string prefix = VaePrefix)
    {
        ArgumentNullException.ThrowIfNull(vae);
        int levels = vae.Config.BlockOutChannels.Count;
        var result = new List<LdmKeyMapping>();
        foreach (var (key, tensor) in vae.state_dict())
        {
            var (ldm, squeeze) = VaeToLdm(key, levels, tensor.dim());
            result.Add(new LdmKeyMapping(key, prefix + ldm, squeeze));
        }
        return result;
    }

    /// <summary>diffusers UNet key → openaimodel key (without prefix).</summary>
    /// <param name="key">diffusers key, e.g. <c>down_blocks.1.attentions.0.proj_in.weight</c>.</param>
    /// <param name="layersPerBlock">num_res_blocks.</param>
    /// <param name="upBlockHasAttention">Per up block (diffusers order): whether it has attentions (decides the upsampler's index).</param>
    public static string UNetToLdm(string key, int layersPerBlock, IReadOnlyList<bool> upBlockHasAttention)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(upBlockHasAttention);
        int per = layersPerBlock + 1;
        Match m;
        if (key.StartsWith("conv_in.", StringComparison.Ordinal)) return "input_blocks.0.0." + key["conv_in.".Length..];
        if (key.StartsWith("time_embedding.linear_1.", StringComparison.Ordinal)) return "time_embed.0." + key["time_embedding.linear_1.".Length..];
        if (key.StartsWith("time_embedding.linear_2.", StringComparison.Ordinal)) return "time_embed.2." + key["time_embedding.linear_2.".Length..];
        if (key.StartsWith("conv_norm_out.", StringComparison.Ordinal)) return "out.0." + key["conv_norm_out.".Length..];
        if (key.StartsWith("conv_out.", StringComparison.Ordinal)) return "out.2." + key["conv_out.".Length..];
        if ((m = DownResnet().Match(key)).Success)
            return $"input_blocks.{1 + Int(m, 1) * per + Int(m, 2)}.0.{Resnet(m.Groups[3].Value)}";
        if ((m = DownAttention().Match(key)).Success)
            return $"input_blocks.{1 + Int(m, 1) * per + Int(m, 2)}.1.{m.Groups[3].Value}";
        if ((m = Downsampler().Match(key)).Success)
            return $"input_blocks.{1 + Int(m, 1) * per + layersPerBlock}.0.op.{m.Groups[2].Value}";
        if ((m = MidResnet().Match(key)).Success)
            return $"middle_block.{(Int(m, 1) == 0 ? 0 : 2)}.{Resnet(m.Groups[2].Value)}";
        if ((m = MidAttention().Match(key)).Success)
            return $"middle_block.1.{m.Groups[1].Value}";
        if ((m = UpResnet().Match(key)).Success)
            return $"output_blocks.{Int(m, 1) * per + Int(m, 2)}.0.{Resnet(m.Groups[3].Value)}";
        if ((m = UpAttention().Match(key)).Success)
            return $"output_blocks.{Int(m, 1) * per + Int(m, 2)}.1.{m.Groups[3].Value}";
        if ((m = Upsampler().Match(key)).Success)
        {
            int block = Int(m, 1);
            return $"output_blocks.{block * per + layersPerBlock}.{(upBlockHasAttention[block] ? 2 : 1)}.conv.{m.Groups[2].Value}";
        }
        throw new NotSupportedException($"LDM key map: no openaimodel name for UNet key '{key}'.");
    }

    /// <summary>diffusers AutoencoderKL key → LDM key (without prefix), and whether the LDM tensor is a 1×1 convolution.</summary>
    public static (string Key, bool SqueezeConv1x1) VaeToLdm(string key, int levels, long rank)
    {
        ArgumentNullException.ThrowIfNull(key);
        Match m;
        if ((m = VaeMidAttention().Match(key)).Success)
        {
            string part = m.Groups[2].Value switch
            {
                "group_norm" => "norm",
                "to_q" => "q",
                "to_k" => "k",
                "to_v" => "v",
                "to_out.0" => "proj_out",
                var other => throw new NotSupportedException($"LDM key map: no LDM name for VAE attention part '{other}' in '{key}'."),
            };
            bool squeeze = part != "norm" && m.Groups[3].Value == "weight" && rank == 2;
            return ($"{m.Groups[1].Value}.mid.attn_1.{part}.{m.Groups[3].Value}", squeeze);
        }
        if ((m = VaeMidResnet().Match(key)).Success)
            return ($"{m.Groups[1].Value}.mid.block_{Int(m, 2) + 1}.{VaeResnet(m.Groups[3].Value)}", false);
        if ((m = VaeDownResnet().Match(key)).Success)
            return ($"encoder.down.{Int(m, 1)}.block.{Int(m, 2)}.{VaeResnet(m.Groups[3].Value)}", false);
        if ((m = VaeDownsampler().Match(key)).Success)
            return ($"encoder.down.{Int(m, 1)}.downsample.conv.{m.Groups[2].Value}", false);
        if ((m = VaeUpResnet().Match(key)).Success)
            return ($"decoder.up.{levels - 1 - Int(m, 1)}.block.{Int(m, 2)}.{VaeResnet(m.Groups[3].Value)}", false);
        if ((m = VaeUpsampler().Match(key)).Success)
            return ($"decoder.up.{levels - 1 - Int(m, 1)}.upsample.conv.{m.Groups[2].Value}", false);
        if ((m = VaeNormOut().Match(key)).Success)
            return ($"{m.Groups[1].Value}.norm_out.{m.Groups[2].Value}", false);
        if (key.StartsWith("encoder.conv_in.", StringComparison.Ordinal) || key.StartsWith("encoder.conv_out.", StringComparison.Ordinal)
            || key.StartsWith("decoder.conv_in.", StringComparison.Ordinal) || key.StartsWith("decoder.conv_out.", StringComparison.Ordinal)
            || key.StartsWith("quant_conv.", StringComparison.Ordinal) || key.StartsWith("post_quant_conv.", StringComparison.Ordinal))
            return (key, false);
        throw new NotSupportedException($"LDM key map: no LDM name for VAE key '{key}'.");
    }

    static int Int(Match m, int group) => int.Parse(m.Groups[group].Value, System.Globalization.CultureInfo.InvariantCulture);

    static string Resnet(string rest)
    {
        int dot = rest.IndexOf('.', StringComparison.Ordinal);
        string head = rest[..dot], tail = rest[dot..];
        return head switch
        {
            "norm1" => "in_layers.0",
            "conv1" => "in_layers.2",
            "time_emb_proj" => "emb_layers.1",
            "norm2" => "out_layers.0",
            "conv2" => "out_layers.3",
            "conv_shortcut" => "skip_connection",
            _ => throw new NotSupportedException($"LDM key map: no openaimodel name for resnet part '{head}'."),
        } + tail;
    }

    static string VaeResnet(string rest) => rest.StartsWith("conv_shortcut.", StringComparison.Ordinal) ? "nin_shortcut." + rest["conv_shortcut.".Length..] : rest;

    [GeneratedRegex(@"^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")] private static partial Regex DownResnet();
    [GeneratedRegex(@"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$")] private static partial Regex DownAttention();
    [GeneratedRegex(@"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$")] private static partial Regex Downsampler();
    [GeneratedRegex(@"^mid_block\.resnets\.(\d+)\.(.+)$")] private static partial Regex MidResnet();
    [GeneratedRegex(@"^mid_block\.attentions\.0\.(.+)$")] private static partial Regex MidAttention();
    [GeneratedRegex(@"^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")] private static partial Regex UpResnet();
    [GeneratedRegex(@"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$")] private static partial Regex UpAttention();
    [GeneratedRegex(@"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$")] private static partial Regex Upsampler();
    [GeneratedRegex(@"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$")] private static partial Regex VaeMidAttention();
    [GeneratedRegex(@"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$")] private static partial Regex VaeMidResnet();
    [GeneratedRegex(@"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")] private static partial Regex VaeDownResnet();
    [GeneratedRegex(@"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$")] private static partial Regex VaeDownsampler();
    [GeneratedRegex(@"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")] private static partial Regex VaeUpResnet();
    [GeneratedRegex(@"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$")] private static partial Regex VaeUpsampler();
    [GeneratedRegex(@"^(encoder|decoder)\.conv_norm_out\.(.+)$")] private static partial Regex VaeNormOut();
}
