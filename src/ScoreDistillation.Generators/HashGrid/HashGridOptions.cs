namespace ScoreDistillation.Generators;

/// <summary>
/// Configuration of a multi-resolution hash grid with tiny-cuda-nn ("HashGrid" encoding) semantics. Defaults are the
/// threestudio / ScaleDreamer geometry configuration (16 levels × 2 features, 2^19 entries, base 16, finest ≈ 4096).
/// </summary>
public sealed record HashGridOptions
{
    /// <summary>Number of resolution levels L (tcnn <c>n_levels</c>).</summary>
    public int Levels { get; init; } = 16;

    /// <summary>Features stored per table entry F (tcnn <c>n_features_per_level</c>); the output has L·F channels.</summary>
    public int FeaturesPerLevel { get; init; } = 2;

    /// <summary>log2 of the maximum number of entries T per level (tcnn <c>log2_hashmap_size</c>).</summary>
    public int Log2TableSize { get; init; } = 19;

    /// <summary>Resolution of the coarsest level (tcnn <c>base_resolution</c>).</summary>
    public int BaseResolution { get; init; } = 16;

    /// <summary>Growth factor between levels (tcnn <c>per_level_scale</c>); 1.0 puts every level at the base resolution.</summary>
    public double PerLevelScale { get; init; } = 1.447269237440378;

    /// <summary>Half-width of the uniform initialisation U(−r, r) of the table (tcnn uses 1e-4).</summary>
    public double InitRange { get; init; } = 1e-4;

    /// <summary>The shared hash grid of Hyper-iNGP (ScaleDreamer §3.3): the defaults.</summary>
    public static HashGridOptions HyperInstantNgp => new();

    /// <summary>The hash grid of Hyper-iNGP's text-conditioned background: 16 × 2, 2^19, base 16, per-level scale 1.0.</summary>
    public static HashGridOptions HyperInstantNgpBackground => new() { PerLevelScale = 1.0 };

    /// <summary>Output width L·F.</summary>
    public int OutputDims => Levels * FeaturesPerLevel;

    internal void Validate()
    {
        if (Levels < 1) throw new ArgumentOutOfRangeException(nameof(Levels), Levels, "A hash grid needs at least one level.");
        if (FeaturesPerLevel < 1) throw new ArgumentOutOfRangeException(nameof(FeaturesPerLevel), FeaturesPerLevel, "Features per level must be positive.");
        if (Log2TableSize is < 3 or > 30) throw new ArgumentOutOfRangeException(nameof(Log2TableSize), Log2TableSize, "log2 table size must be in [3, 30].");
        if (BaseResolution < 1) throw new ArgumentOutOfRangeException(nameof(BaseResolution), BaseResolution, "Base resolution must be positive.");
        if (!(PerLevelScale > 0) || double.IsInfinity(PerLevelScale)) throw new ArgumentOutOfRangeException(nameof(PerLevelScale), PerLevelScale, "Per-level scale must be positive and finite.");
        if (!(InitRange >= 0)) throw new ArgumentOutOfRangeException(nameof(InitRange), InitRange, "Init range must be non-negative.");
    }
}
