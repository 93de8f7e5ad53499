using System.Text.Json;
using System.Text.Json.Serialization;
using ScoreDistillation.Diffusion.Loading;

namespace ScoreDistillation.Diffusion.Vae;

/// <summary>
/// The diffusers <c>AutoencoderKL</c> configuration, deserialised from its <c>config.json</c> (snake_case keys, defaults
/// equal to diffusers' constructor defaults).
/// </summary>
public sealed record AutoencoderKLConfig
{
    /// <summary>Image channels.</summary>
    [JsonPropertyName("in_channels")] public int InChannels { get; init; } = 3;

    /// <summary>Decoded image channels.</summary>
    [JsonPropertyName("out_channels")] public int OutChannels { get; init; } = 3;

    /// <summary>Encoder block types (DownEncoderBlock2D).</summary>
    [JsonPropertyName("down_block_types")] public IReadOnlyList<string> DownBlockTypes { get; init; } = new[] { "DownEncoderBlock2D" };

    /// <summary>Decoder block types (UpDecoderBlock2D).</summary>
    [JsonPropertyName("up_block_types")] public IReadOnlyList<string> UpBlockTypes { get; init; } = new[] { "UpDecoderBlock2D" };

    /// <summary>Channels of each encoder block (reversed in the decoder).</summary>
    [JsonPropertyName("block_out_channels")] public IReadOnlyList<int> BlockOutChannels { get; init; } = new[] { 64 };

    /// <summary>Resnets per encoder block (decoder blocks have one more).</summary>
    [JsonPropertyName("layers_per_block")] public int LayersPerBlock { get; init; } = 1;

    /// <summary>Activation function.</summary>
    [JsonPropertyName("act_fn")] public string ActFn { get; init; } = "silu";

    /// <summary>Latent channels.</summary>
    [JsonPropertyName("latent_channels")] public int LatentChannels { get; init; } = 4;

    /// <summary>GroupNorm groups.</summary>
    [JsonPropertyName("norm_num_groups")] public int NormNumGroups { get; init; } = 32;

    /// <summary>Image size the model was trained at.</summary>
    [JsonPropertyName("sample_size")] public int SampleSize { get; init; } = 32;

    /// <summary>Latents are multiplied by this after encoding and divided by it before decoding (0.18215 for SD).</summary>
    [JsonPropertyName("scaling_factor")] public double ScalingFactor { get; init; } = 0.18215;

    /// <summary>Latent shift (SD3/Flux style; null for SD 1.x/2.x).</summary>
    [JsonPropertyName("shift_factor")] public double? ShiftFactor { get; init; }

    /// <summary>Whether diffusers runs this VAE in float32 even in half-precision pipelines.</summary>
    [JsonPropertyName("force_upcast")] public bool ForceUpcast { get; init; } = true;

    /// <summary>Whether the 1×1 quant_conv follows the encoder.</summary>
    [JsonPropertyName("use_quant_conv")] public bool UseQuantConv { get; init; } = true;

    /// <summary>Whether the 1×1 post_quant_conv precedes the decoder.</summary>
    [JsonPropertyName("use_post_quant_conv")] public bool UsePostQuantConv { get; init; } = true;

    /// <summary>Whether the encoder and decoder mid blocks have self-attention.</summary>
    [JsonPropertyName("mid_block_add_attention")] public bool MidBlockAddAttention { get; init; } = true;

    /// <summary>The Stable Diffusion 1.5 VAE (runwayml/stable-diffusion-v1-5, vae/config.json).</summary>
    public static AutoencoderKLConfig StableDiffusion15 { get; } = new()
    {
        DownBlockTypes = new[] { "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D" },
        UpBlockTypes = new[] { "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D" },
        BlockOutChannels = new[] { 128, 256, 512, 512 },
        LayersPerBlock = 2,
        SampleSize = 512,
    };

    /// <summary>The Stable Diffusion 2.1-base VAE (stabilityai/stable-diffusion-2-1-base, vae/config.json; same architecture as 1.5).</summary>
    public static AutoencoderKLConfig StableDiffusion21Base { get; } = StableDiffusion15 with { SampleSize = 768 };

    /// <summary>Parses a diffusers <c>config.json</c> text.</summary>
    public static AutoencoderKLConfig FromJson(string json) => ConfigJson.Parse<AutoencoderKLConfig>(json, "AutoencoderKLConfig");

    /// <summary>Reads a diffusers <c>config.json</c> file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist (the message names the path).</exception>
    public static AutoencoderKLConfig FromFile(string path) => ConfigJson.Load<AutoencoderKLConfig>(path);

    /// <summary>Serialises to diffusers' snake_case JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);
}
