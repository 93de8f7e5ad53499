namespace ScoreDistillation.Generators;

/// <summary>
/// Configuration of <see cref="TriplaneTransformer"/> (ScaleDreamer's <c>Triplane-transformer-sdf</c>, local-text path).
/// Defaults are the DL17k reference (≈ 120.5 M parameters); <see cref="Reduced"/> is a CPU-sized variant of the same code.
/// </summary>
public sealed record TriplaneTransformerOptions
{
    /// <summary>Token width (<c>inner_dim</c>).</summary>
    public int InnerDim { get; init; } = 768;

    /// <summary>Width of the text tokens cross-attended to (<c>condition_dim</c>; 1024 for SD2.1's text tower).</summary>
    public int TextDim { get; init; } = 1024;

    /// <summary>Token grid per plane (<c>triplane_low_res</c>): 3·R² learned tokens.</summary>
    public int LowResolution { get; init; } = 32;

    /// <summary>Plane resolution after the ×2 transposed convolution (<c>triplane_high_res</c> = 2·<see cref="LowResolution"/>).</summary>
    public int HighResolution => 2 * LowResolution;

    /// <summary>Channels per plane (<c>triplane_dim</c>); the decoders see 3× this.</summary>
    public int PlaneChannels { get; init; } = 32;

    /// <summary>Transformer blocks (<c>num_layers</c>).</summary>
    public int Layers { get; init; } = 12;

    /// <summary>Attention heads (<c>num_heads</c>); head width = InnerDim / Heads.</summary>
    public int Heads { get; init; } = 16;

    /// <summary>MLP hidden width / token width.</summary>
    public double MlpRatio { get; init; } = 4.0;

    /// <summary>LayerNorm epsilon.</summary>
    public double LayerNormEps { get; init; } = 1e-6;

    /// <summary>Hidden width of the SDF and feature MLPs.</summary>
    public int MlpHidden { get; init; } = 64;

    /// <summary>Hidden layers of the SDF and feature MLPs (threestudio <c>n_hidden_layers</c>).</summary>
    public int MlpHiddenLayers { get; init; } = 2;

    /// <summary>Radius r of the sphere SDF bias ‖p‖ − r (0.8 in ScaleDreamer).</summary>
    public double SdfBiasRadius { get; init; } = 0.8;

    /// <summary>Half-size of the bounding cube; world points in [−radius, radius]³ map to [−1, 1] for plane sampling.</summary>
    public double Radius { get; init; } = 2.0;

    /// <summary>The DL17k configuration.</summary>
    public static TriplaneTransformerOptions Reference => new();

    /// <summary>A small configuration for CPU tests and demos: width 32, 2 blocks, 4 heads, 8×8 tokens per plane (16² planes of 8 channels), 32-d text.</summary>
    public static TriplaneTransformerOptions Reduced => new()
    {
        InnerDim = 32, TextDim = 32, LowResolution = 8, PlaneChannels = 8, Layers = 2, Heads = 4, MlpHidden = 16,
    };

    /// <summary>Throws when a size is not usable, naming it.</summary>
    public void Validate()
    {
        static void Positive(int v, string name)
        {
            if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"{name} must be positive.");
        }
        Positive(InnerDim, nameof(InnerDim));
        Positive(TextDim, nameof(TextDim));
        Positive(LowResolution, nameof(LowResolution));
        Positive(PlaneChannels, nameof(PlaneChannels));
        Positive(Layers, nameof(Layers));
        Positive(Heads, nameof(Heads));
        Positive(MlpHidden, nameof(MlpHidden));
        Positive(MlpHiddenLayers, nameof(MlpHiddenLayers));
        if (InnerDim % Heads != 0) throw new ArgumentException($"InnerDim ({InnerDim}) must be divisible by Heads ({Heads}).");
        if (MlpRatio <= 0 || (int)(InnerDim * MlpRatio) < 1) throw new ArgumentOutOfRangeException(nameof(MlpRatio), MlpRatio, "MlpRatio must give a positive hidden width.");
        if (LayerNormEps <= 0) throw new ArgumentOutOfRangeException(nameof(LayerNormEps), LayerNormEps, "LayerNormEps must be positive.");
        if (Radius <= 0) throw new ArgumentOutOfRangeException(nameof(Radius), Radius, "Radius must be positive.");
    }
}
