using ScoreDistillation.Diffusion.Unet;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>
/// MVDream's <c>MultiViewUNetModel</c> configuration in the LDM (openaimodel) vocabulary of its YAML files
/// (<c>configs/sd-v2-base.yaml</c>, <c>sd-v1.yaml</c>). Immutable; <see cref="ToUNetConfig"/> gives the equivalent diffusers UNet.
/// </summary>
public sealed record MultiViewUNetConfig
{
    /// <summary>Latent channels in.</summary>
    public int InChannels { get; init; } = 4;

    /// <summary>Latent channels out.</summary>
    public int OutChannels { get; init; } = 4;

    /// <summary>Base width (<c>model_channels</c>).</summary>
    public int ModelChannels { get; init; } = 320;

    /// <summary>Width multiplier per resolution level (<c>channel_mult</c>).</summary>
    public IReadOnlyList<int> ChannelMult { get; init; } = new[] { 1, 2, 4, 4 };

    /// <summary>Downsampling factors at which spatial transformers run (<c>attention_resolutions</c>).</summary>
    public IReadOnlyList<int> AttentionResolutions { get; init; } = new[] { 4, 2, 1 };

    /// <summary>Resnets per level (<c>num_res_blocks</c>).</summary>
    public int NumResBlocks { get; init; } = 2;

    /// <summary>Channels per attention head (<c>num_head_channels</c>); used when <see cref="NumHeads"/> is null.</summary>
    public int? NumHeadChannels { get; init; } = 64;

    /// <summary>Fixed number of heads (<c>num_heads</c>, SD 1.x style); null to derive heads from <see cref="NumHeadChannels"/>.</summary>
    public int? NumHeads { get; init; }

    /// <summary>Linear (true, SD 2.x) or 1×1-conv (false, SD 1.x) transformer projections.</summary>
    public bool UseLinearInTransformer { get; init; } = true;

    /// <summary>Transformer blocks per spatial transformer.</summary>
    public int TransformerDepth { get; init; } = 1;

    /// <summary>Width of the text tokens (<c>context_dim</c>).</summary>
    public int ContextDim { get; init; } = 1024;

    /// <summary>Width of the camera vector (<c>camera_dim</c>); 16 = a flattened 4×4 matrix.</summary>
    public int CameraDim { get; init; } = 16;

    /// <summary><c>sd-v2.1-base-4view</c> (configs/sd-v2-base.yaml).</summary>
    public static MultiViewUNetConfig SdV21Base4View { get; } = new();

    /// <summary><c>sd-v1.5-4view</c> (configs/sd-v1.yaml): 8 heads, 768-d context, convolutional projections.</summary>
    public static MultiViewUNetConfig SdV15_4View { get; } = new()
    {
        NumHeads = 8,
        NumHeadChannels = null,
        ContextDim = 768,
        UseLinearInTransformer = false,
    };

    /// <summary>Width of the time (and camera) embedding: 4 × <see cref="ModelChannels"/>.</summary>
    public int TimeEmbeddingDim => ModelChannels * 4;

    /// <summary>The diffusers <see cref="UNet2DConditionConfig"/> with the same structure and computation.</summary>
    /// <exception cref="ArgumentException">The configuration has no diffusers equivalent (e.g. a head size that does not divide a width).</exception>
    public UNet2DConditionConfig ToUNetConfig()
    {
        int n = ChannelMult.Count;
        if (n == 0) throw new ArgumentException("MultiViewUNetConfig: channel_mult is empty.");
        var channels = ChannelMult.Select(m => ModelChannels * m).ToArray();
        var attn = Enumerable.Range(0, n).Select(i => AttentionResolutions.Contains(1 << i)).ToArray();
        var heads = channels.Select(c =>
        {
            if (NumHeads is int h) return h;
            int hc = NumHeadChannels ?? throw new ArgumentException("MultiViewUNetConfig: set num_heads or num_head_channels.");
            if (c % hc != 0) throw new ArgumentException($"MultiViewUNetConfig: {c} channels are not divisible by num_head_channels {hc}.");
            return c / hc;
        }).ToArray();
        return new UNet2DConditionConfig
        {
            InChannels = InChannels,
            OutChannels = OutChannels,
            BlockOutChannels = channels,
            DownBlockTypes = attn.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray(),
            UpBlockTypes = attn.Reverse().Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray(),
            LayersPerBlock = new[] { NumResBlocks },
            // diffusers' SD2 configs call the head count "attention_head_dim"; num_attention_heads says what it is.
            NumAttentionHeads = heads,
            CrossAttentionDim = new[] { ContextDim },
            TransformerLayersPerBlock = new[] { TransformerDepth },
            UseLinearProjection = UseLinearInTransformer,
            FlipSinToCos = true,
            FreqShift = 0,
            NormNumGroups = 32,
            NormEps = 1e-5,
            DownsamplePadding = 1,
        };
    }
}
