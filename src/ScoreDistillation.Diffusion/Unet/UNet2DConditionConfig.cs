using System.Text.Json;
using System.Text.Json.Serialization;
using ScoreDistillation.Diffusion.Loading;

namespace ScoreDistillation.Diffusion.Unet;

/// <summary>
/// The diffusers <c>UNet2DConditionModel</c> configuration, deserialised from its <c>config.json</c> (snake_case keys,
/// defaults equal to diffusers' constructor defaults). Per-block values may be given as one value or one per block.
/// </summary>
public sealed record UNet2DConditionConfig
{
    /// <summary>Latent height/width the model was trained at (64 for 512-px SD).</summary>
    [JsonPropertyName("sample_size")] public int? SampleSize { get; init; }

    /// <summary>Input latent channels.</summary>
    [JsonPropertyName("in_channels")] public int InChannels { get; init; } = 4;

    /// <summary>Output channels.</summary>
    [JsonPropertyName("out_channels")] public int OutChannels { get; init; } = 4;

    /// <summary>Maps the input from [0, 1] to [−1, 1] first.</summary>
    [JsonPropertyName("center_input_sample")] public bool CenterInputSample { get; init; }

    /// <summary>Sinusoidal embedding order: [cos, sin] when true.</summary>
    [JsonPropertyName("flip_sin_to_cos")] public bool FlipSinToCos { get; init; } = true;

    /// <summary>Frequency shift of the sinusoidal embedding.</summary>
    [JsonPropertyName("freq_shift")] public double FreqShift { get; init; }

    /// <summary>Down block types (CrossAttnDownBlock2D or DownBlock2D).</summary>
    [JsonPropertyName("down_block_types")] public IReadOnlyList<string> DownBlockTypes { get; init; } =
        new[] { "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D" };

    /// <summary>Mid block type (UNetMidBlock2DCrossAttn or null for none).</summary>
    [JsonPropertyName("mid_block_type")] public string? MidBlockType { get; init; } = "UNetMidBlock2DCrossAttn";

    /// <summary>Up block types (UpBlock2D or CrossAttnUpBlock2D).</summary>
    [JsonPropertyName("up_block_types")] public IReadOnlyList<string> UpBlockTypes { get; init; } =
        new[] { "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D" };

    /// <summary>Whether the first attention of each transformer block attends to the text too (one value or per block).</summary>
    [JsonPropertyName("only_cross_attention"), JsonConverter(typeof(ScalarOrListConverter<bool>))]
    public IReadOnlyList<bool> OnlyCrossAttention { get; init; } = new[] { false };

    /// <summary>Output channels of each down block.</summary>
    [JsonPropertyName("block_out_channels")] public IReadOnlyList<int> BlockOutChannels { get; init; } = new[] { 320, 640, 1280, 1280 };

    /// <summary>Resnets per down block (up blocks have one more); one value or per block.</summary>
    [JsonPropertyName("layers_per_block"), JsonConverter(typeof(ScalarOrListConverter<int>))]
    public IReadOnlyList<int> LayersPerBlock { get; init; } = new[] { 2 };

    /// <summary>Padding of the downsampling conv.</summary>
    [JsonPropertyName("downsample_padding")] public int DownsamplePadding { get; init; } = 1;

    /// <summary>Output scale factor of the mid-block resnets.</summary>
    [JsonPropertyName("mid_block_scale_factor")] public double MidBlockScaleFactor { get; init; } = 1.0;

    /// <summary>Dropout probability.</summary>
    [JsonPropertyName("dropout")] public double Dropout { get; init; }

    /// <summary>Activation function.</summary>
    [JsonPropertyName("act_fn")] public string ActFn { get; init; } = "silu";

    /// <summary>GroupNorm groups (null is not supported).</summary>
    [JsonPropertyName("norm_num_groups")] public int? NormNumGroups { get; init; } = 32;

    /// <summary>Resnet and output GroupNorm epsilon.</summary>
    [JsonPropertyName("norm_eps")] public double NormEps { get; init; } = 1e-5;

    /// <summary>Width of the text tokens (one value or per block).</summary>
    [JsonPropertyName("cross_attention_dim"), JsonConverter(typeof(ScalarOrListConverter<int>))]
    public IReadOnlyList<int> CrossAttentionDim { get; init; } = new[] { 1280 };

    /// <summary>Transformer blocks per attention (one value or per block).</summary>
    [JsonPropertyName("transformer_layers_per_block"), JsonConverter(typeof(ScalarOrListConverter<int>))]
    public IReadOnlyList<int> TransformerLayersPerBlock { get; init; } = new[] { 1 };

    /// <summary>
    /// diffusers' historical name: used as the <b>number of heads</b> when <see cref="NumAttentionHeads"/> is null
    /// (SD 1.5: 8; SD 2.x: [5, 10, 20, 20], i.e. head dim 64).
    /// </summary>
    [JsonPropertyName("attention_head_dim"), JsonConverter(typeof(ScalarOrListConverter<int>))]
    public IReadOnlyList<int> AttentionHeadDim { get; init; } = new[] { 8 };

    /// <summary>Number of attention heads (one value or per block); overrides <see cref="AttentionHeadDim"/>.</summary>
    [JsonPropertyName("num_attention_heads"), JsonConverter(typeof(ScalarOrListConverter<int>))]
    public IReadOnlyList<int>? NumAttentionHeads { get; init; }

    /// <summary>Linear (true, SD 2.x) or 1×1-conv (false, SD 1.x) projections around the transformers.</summary>
    [JsonPropertyName("use_linear_projection")] public bool UseLinearProjection { get; init; }

    /// <summary>Computes attention in float32 for half-precision models (SD 2.1-768).</summary>
    [JsonPropertyName("upcast_attention")] public bool UpcastAttention { get; init; }

    /// <summary>Time conditioning of the resnets: "default" or "scale_shift".</summary>
    [JsonPropertyName("resnet_time_scale_shift")] public string ResnetTimeScaleShift { get; init; } = "default";

    /// <summary>Time embedding type (only "positional" is supported).</summary>
    [JsonPropertyName("time_embedding_type")] public string TimeEmbeddingType { get; init; } = "positional";

    /// <summary>Time embedding width (null: 4 × the first block's channels).</summary>
    [JsonPropertyName("time_embedding_dim")] public int? TimeEmbeddingDim { get; init; }

    /// <summary>Kernel size of conv_in.</summary>
    [JsonPropertyName("conv_in_kernel")] public int ConvInKernel { get; init; } = 3;

    /// <summary>Kernel size of conv_out.</summary>
    [JsonPropertyName("conv_out_kernel")] public int ConvOutKernel { get; init; } = 3;

    /// <summary>Class embedding type (only null is supported; add extra embeddings through the forward call instead).</summary>
    [JsonPropertyName("class_embed_type")] public string? ClassEmbedType { get; init; }

    /// <summary>Number of class embeddings (only null is supported).</summary>
    [JsonPropertyName("num_class_embeds")] public int? NumClassEmbeds { get; init; }

    /// <summary>Additional embedding type (SDXL; only null is supported).</summary>
    [JsonPropertyName("addition_embed_type")] public string? AdditionEmbedType { get; init; }

    /// <summary>Encoder hidden-state projection input width (only null is supported).</summary>
    [JsonPropertyName("encoder_hid_dim")] public int? EncoderHidDim { get; init; }

    /// <summary>Timestep condition projection width (LCM; only null is supported).</summary>
    [JsonPropertyName("time_cond_proj_dim")] public int? TimeCondProjDim { get; init; }

    /// <summary>Activation after the time embedding (only null is supported).</summary>
    [JsonPropertyName("time_embedding_act_fn")] public string? TimeEmbeddingActFn { get; init; }

    /// <summary>Activation inside the time embedding after linear_2 (only null is supported).</summary>
    [JsonPropertyName("timestep_post_act")] public string? TimestepPostAct { get; init; }

    /// <summary>Dual cross-attention (only false is supported).</summary>
    [JsonPropertyName("dual_cross_attention")] public bool DualCrossAttention { get; init; }

    /// <summary>Attention type (only "default" is supported).</summary>
    [JsonPropertyName("attention_type")] public string AttentionType { get; init; } = "default";

    /// <summary>Mid block only-cross-attention (null: follow <see cref="OnlyCrossAttention"/> when it is a single value).</summary>
    [JsonPropertyName("mid_block_only_cross_attention")] public bool? MidBlockOnlyCrossAttention { get; init; }

    /// <summary>The Stable Diffusion 1.5 UNet (runwayml/stable-diffusion-v1-5, unet/config.json).</summary>
    public static UNet2DConditionConfig StableDiffusion15 { get; } = new()
    {
        SampleSize = 64,
        CrossAttentionDim = new[] { 768 },
        AttentionHeadDim = new[] { 8 },
    };

    /// <summary>The Stable Diffusion 2.1-base UNet (stabilityai/stable-diffusion-2-1-base, unet/config.json).</summary>
    public static UNet2DConditionConfig StableDiffusion21Base { get; } = new()
    {
        SampleSize = 64,
        CrossAttentionDim = new[] { 1024 },
        AttentionHeadDim = new[] { 5, 10, 20, 20 },
        UseLinearProjection = true,
    };

    /// <summary>Parses a diffusers <c>config.json</c> text.</summary>
    public static UNet2DConditionConfig FromJson(string json) => ConfigJson.Parse<UNet2DConditionConfig>(json, "UNet2DConditionConfig");

    /// <summary>Reads a diffusers <c>config.json</c> file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist (the message names the path).</exception>
    public static UNet2DConditionConfig FromFile(string path) => ConfigJson.Load<UNet2DConditionConfig>(path);

    /// <summary>Serialises to diffusers' snake_case JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);
}
