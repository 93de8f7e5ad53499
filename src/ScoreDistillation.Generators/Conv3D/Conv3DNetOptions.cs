namespace ScoreDistillation.Generators;

/// <summary>How the per-voxel noise of the 3DConv-Net synthesis layers is chosen when none is passed explicitly.</summary>
public enum VoxelNoiseMode
{
    /// <summary>Fresh N(0, 1) noise per call and per sample (upstream <c>noise_mode='random'</c>, used in training).</summary>
    Random,
    /// <summary>The fixed noise buffers stored in the module (<c>noise_const</c>, upstream <c>'const'</c>).</summary>
    Const,
    /// <summary>No noise.</summary>
    None,
}

/// <summary>
/// Configuration of <see cref="Conv3DNet"/> (ScaleDreamer's <c>3DConv-net</c> geometry). Defaults are the DF415 / AT2520
/// reference (channel multiplier 1, ≈ 88.7 M parameters); <see cref="ReferenceLarge"/> is the CP100k configuration
/// (multiplier 2, ≈ 144.8 M); <see cref="Reduced"/> is a CPU-sized variant of the same code.
/// </summary>
public sealed record Conv3DNetOptions
{
    /// <summary>Latent noise size z (upstream <c>z_dim</c>).</summary>
    public int ZDim { get; init; } = 64;

    /// <summary>Style size w (<c>w_dim</c>).</summary>
    public int WDim { get; init; } = 256;

    /// <summary>Pooled text embedding size (<c>c_dim</c>; 1024 for the SD2.1 / OpenCLIP ViT-H text tower).</summary>
    public int TextDim { get; init; } = 1024;

    /// <summary>Fully connected layers of the mapping network before the text is concatenated (<c>num_layers</c>).</summary>
    public int MappingLayers { get; init; } = 2;

    /// <summary>Learning-rate multiplier of the mapping layers (1 for text-conditioned generators).</summary>
    public double MappingLrMultiplier { get; init; } = 1.0;

    /// <summary>Resolution of the learned constant where synthesis starts.</summary>
    public int StartResolution { get; init; } = 4;

    /// <summary>Output feature-volume resolution (<c>img_resolution</c>), a power of two.</summary>
    public int Resolution { get; init; } = 128;

    /// <summary>Channels of the output feature volume (<c>img_channels</c>).</summary>
    public int FeatureChannels { get; init; } = 32;

    /// <summary>Channel multiplier m (1 or 2 in the reference configs).</summary>
    public int ChannelMultiplier { get; init; } = 1;

    /// <summary>Channels at resolution r are min(<see cref="MaxChannels"/>, <see cref="ChannelBase"/>·m / r) (upstream table 512,512,512,256m,128m,64m).</summary>
    public int ChannelBase { get; init; } = 8192;

    /// <summary>Upper bound on channels per resolution.</summary>
    public int MaxChannels { get; init; } = 512;

    /// <summary>Blocks at resolutions ≤ this get a learned per-voxel constant bias (<c>bias_resolution</c>).</summary>
    public int BiasResolution { get; init; } = 64;

    /// <summary>Hidden width of the SDF and feature MLPs.</summary>
    public int MlpHidden { get; init; } = 64;

    /// <summary>Hidden layers of the SDF and feature MLPs (threestudio <c>n_hidden_layers</c>).</summary>
    public int MlpHiddenLayers { get; init; } = 1;

    /// <summary>Radius r of the sphere SDF bias ‖p‖ − r (0.8 in ScaleDreamer).</summary>
    public double SdfBiasRadius { get; init; } = 0.8;

    /// <summary>Half-size of the bounding cube; world points in [−radius, radius]³ map to [−1, 1] for <c>grid_sample</c>.</summary>
    public double Radius { get; init; } = 2.0;

    /// <summary>Per-voxel noise used by <see cref="Conv3DNet.Generate"/> when none is given explicitly.</summary>
    public VoxelNoiseMode NoiseMode { get; init; } = VoxelNoiseMode.Random;

    /// <summary>DF415 / AT2520 configuration (channel multiplier 1).</summary>
    public static Conv3DNetOptions Reference => new();

    /// <summary>CP100k configuration (channel multiplier 2).</summary>
    public static Conv3DNetOptions ReferenceLarge => new() { ChannelMultiplier = 2 };

    /// <summary>A small configuration for CPU tests and demos: 16³ × 8 volume, 16 channels at most, 32-d text.</summary>
    public static Conv3DNetOptions Reduced => new()
    {
        ZDim = 8, WDim = 16, TextDim = 32, Resolution = 16, FeatureChannels = 8,
        ChannelBase = 128, MaxChannels = 16, BiasResolution = 8, MlpHidden = 16,
    };

    /// <summary>Block resolutions from <see cref="StartResolution"/> to <see cref="Resolution"/> (doubling).</summary>
    public IReadOnlyList<int> BlockResolutions
    {
        get
        {
            Validate();
            var list = new List<int>();
            for (int r = StartResolution; r <= Resolution; r *= 2) list.Add(r);
            return list;
        }
    }

    /// <summary>Channels of the synthesis features at resolution <paramref name="resolution"/>.</summary>
    public int ChannelsAt(int resolution) =>
        (int)Math.Min(MaxChannels, (long)ChannelBase * ChannelMultiplier / resolution);

    /// <summary>Throws when a size is not usable, naming it.</summary>
    public void Validate()
    {
        static void Positive(int v, string name)
        {
            if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"{name} must be positive.");
        }
        Positive(ZDim, nameof(ZDim));
        Positive(WDim, nameof(WDim));
        Positive(TextDim, nameof(TextDim));
        Positive(FeatureChannels, nameof(FeatureChannels));
        Positive(ChannelMultiplier, nameof(ChannelMultiplier));
        Positive(MlpHidden, nameof(MlpHidden));
        Positive(MlpHiddenLayers, nameof(MlpHiddenLayers));
        if (MappingLayers < 0) throw new ArgumentOutOfRangeException(nameof(MappingLayers), MappingLayers, "MappingLayers must be ≥ 0.");
        if (StartResolution < 1 || (StartResolution & (StartResolution - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(StartResolution), StartResolution, "StartResolution must be a power of two.");
        if (Resolution < StartResolution || (Resolution & (Resolution - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(Resolution), Resolution, $"Resolution must be a power of two ≥ StartResolution ({StartResolution}).");
        if (ChannelsAt(Resolution) < 1)
            throw new ArgumentOutOfRangeException(nameof(ChannelBase), ChannelBase, $"ChannelBase·m/Resolution gives no channels at {Resolution}³.");
        if (Radius <= 0) throw new ArgumentOutOfRangeException(nameof(Radius), Radius, "Radius must be positive.");
        if (MappingLrMultiplier <= 0) throw new ArgumentOutOfRangeException(nameof(MappingLrMultiplier), MappingLrMultiplier, "MappingLrMultiplier must be positive.");
    }
}
