namespace ScoreDistillation.Diffusion.Blocks;

/// <summary>Resnet settings shared by every block of one model.</summary>
/// <param name="TembChannels">Time-embedding width, null for the VAE.</param>
/// <param name="Eps">GroupNorm epsilon.</param>
/// <param name="ActFn">Activation name.</param>
/// <param name="Groups">GroupNorm groups.</param>
/// <param name="TimeEmbeddingNorm">"default" or "scale_shift".</param>
/// <param name="Dropout">Dropout probability.</param>
/// <param name="Factory">Layer factory (device, dtype).</param>
internal readonly record struct ResnetSettings(long? TembChannels, double Eps, string ActFn, long Groups, string TimeEmbeddingNorm, double Dropout, LayerFactory Factory)
{
    public ResnetBlock2D Resnet(long inChannels, long outChannels, double outputScaleFactor = 1.0) =>
        new(inChannels, outChannels, TembChannels, Groups, Eps, ActFn, TimeEmbeddingNorm, outputScaleFactor, Dropout, Factory);
}

/// <summary>Transformer settings of one cross-attention block.</summary>
/// <param name="Heads">Attention heads (head dim = channels / heads).</param>
/// <param name="CrossAttentionDim">Width of the text tokens.</param>
/// <param name="TransformerLayers">Transformer blocks per Transformer2DModel.</param>
/// <param name="UseLinearProjection">Linear (SD2) or 1×1-conv (SD1) proj_in/proj_out.</param>
/// <param name="OnlyCrossAttention">attn1 attends to the context too.</param>
/// <param name="UpcastAttention">Attention in float32 for half-precision models.</param>
internal readonly record struct CrossAttentionSettings(int Heads, long CrossAttentionDim, int TransformerLayers, bool UseLinearProjection, bool OnlyCrossAttention, bool UpcastAttention)
{
    public Transformer2DModel Transformer(long channels, in ResnetSettings r)
    {
        if (channels % Heads != 0)
            throw new ArgumentException($"Cross-attention block: {channels} channels are not divisible by {Heads} attention heads.");
        return new Transformer2DModel(Heads, (int)(channels / Heads), channels, TransformerLayers, CrossAttentionDim, r.Groups,
            UseLinearProjection, OnlyCrossAttention, UpcastAttention, r.Dropout, r.Factory);
    }
}
