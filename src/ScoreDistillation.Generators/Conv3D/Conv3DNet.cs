using ScoreDistillation.Generators.Conv3D;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>
/// ScaleDreamer's 3DConv-Net: a text-conditioned 3D StyleGAN2 (adapted from CC3D) that turns (z, pooled text embedding)
/// into a feature volume [B, 32, 128³], decoded per point by trilinear sampling and two bias-free MLPs into an SDF (with
/// a sphere bias) and raw colour features. Samples of a batch never mix: modulation runs as a grouped convolution and
/// each field row samples only its own volume.
/// </summary>
public sealed class Conv3DNet : I3DGenerator
{
    private readonly SdfGeometryModule<StyleGan3DGenerator> module;

    /// <summary>Builds the network.</summary>
    /// <param name="options">Sizes; <see cref="Conv3DNetOptions.Reference"/> when null.</param>
    /// <param name="device">Device of the parameters (CPU when null; <c>meta</c> builds without memory, e.g. to count parameters).</param>
    /// <param name="initGenerator">Random source of the initial weights (the global RNG when null).</param>
    /// <param name="noiseGenerator">Random source of z and the per-voxel noise when they are not passed explicitly (seed 0 on the CPU when null).</param>
    public Conv3DNet(Conv3DNetOptions? options = null, Device? device = null, Generator? initGenerator = null, Generator? noiseGenerator = null)
    {
        Options = options ?? Conv3DNetOptions.Reference;
        Options.Validate();
        var dev = device ?? CPU;
        module = new SdfGeometryModule<StyleGan3DGenerator>("Conv3DNetModule", new StyleGan3DGenerator(Options, dev, initGenerator),
            Options.FeatureChannels, Options.MlpHidden, Options.MlpHiddenLayers, Options.Radius, dev, initGenerator);
        NoiseGenerator = noiseGenerator ?? new Generator(0, CPU);
    }

    /// <summary>The configuration.</summary>
    public Conv3DNetOptions Options { get; }

    /// <inheritdoc />
    public nn.Module Module => module;

    /// <inheritdoc />
    /// <remarks>One group, "generator" (upstream "geometry"); the environment-map background is not owned by this generator.</remarks>
    public IReadOnlyDictionary<string, IReadOnlyList<Parameter>> ParameterGroups =>
        new Dictionary<string, IReadOnlyList<Parameter>> { ["generator"] = module.parameters().ToArray() };

    /// <inheritdoc />
    public IBackground? Background => null;

    /// <summary>Random source of z and the per-voxel noise when they are not passed explicitly.</summary>
    public Generator NoiseGenerator { get; set; }

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => module.parameters().Sum(p => p.numel());

    /// <summary>Shapes of the explicit per-voxel noise tensors (one per synthesis layer, in order) for a batch of <paramref name="batch"/>.</summary>
    public IReadOnlyList<long[]> VoxelNoiseShapes(int batch) =>
        module.SpaceGenerator.Synthesis.NoiseLayers.Select(l => new long[] { batch, 1, l.Resolution, l.Resolution, l.Resolution }).ToArray();

    /// <summary>Draws z ~ N(0, I) [B, ZDim] on the parameters' device.</summary>
    public Tensor SampleLatent(int batch, Generator? generator = null) => Draw([batch, Options.ZDim], generator ?? NoiseGenerator);

    /// <summary>Draws N(0, 1) per-voxel noise for every synthesis layer (see <see cref="VoxelNoiseShapes"/>).</summary>
    public IReadOnlyList<Tensor> SampleVoxelNoise(int batch, Generator? generator = null) =>
        VoxelNoiseShapes(batch).Select(s => Draw(s, generator ?? NoiseGenerator)).ToArray();

    /// <summary>Mapping network: (z [B, ZDim], pooled text [B, TextDim]) → w [B, WDim].</summary>
    public Tensor Map(Tensor z, Tensor pooledText)
    {
        CheckLatent(z, pooledText);
        return module.SpaceGenerator.Mapping.call(z, pooledText);
    }

    /// <summary>
    /// The feature volume [B, FeatureChannels, R, R, R] of a batch (the upstream "space cache").
    /// </summary>
    /// <param name="pooledText">Pooled text embeddings [B, TextDim].</param>
    /// <param name="z">Latent noise [B, ZDim].</param>
    /// <param name="voxelNoise">
    /// Explicit unscaled per-voxel noise, one tensor per synthesis layer shaped as <see cref="VoxelNoiseShapes"/> (each is
    /// multiplied by the layer's learned strength); when null the noise follows <see cref="Conv3DNetOptions.NoiseMode"/>.
    /// </param>
    public Tensor Synthesize(Tensor pooledText, Tensor z, IReadOnlyList<Tensor>? voxelNoise = null)
    {
        CheckLatent(z, pooledText);
        using var scope = NewDisposeScope();
        var layers = module.SpaceGenerator.Synthesis.NoiseLayers;
        int b = (int)z.shape[0];
        Tensor?[] noise;
        if (voxelNoise is not null)
        {
            if (voxelNoise.Count != layers.Count)
                throw new ArgumentException($"Expected {layers.Count} voxel-noise tensors (one per synthesis layer), got {voxelNoise.Count}.", nameof(voxelNoise));
            var shapes = VoxelNoiseShapes(b);
            for (int i = 0; i < layers.Count; i++)
                if (!voxelNoise[i].shape.SequenceEqual(shapes[i]))
                    throw new ArgumentException($"Voxel noise {i} must be [{string.Join(", ", shapes[i])}], got [{string.Join(", ", voxelNoise[i].shape)}].", nameof(voxelNoise));
            noise = voxelNoise.ToArray<Tensor?>();
        }
        else
        {
            noise = Options.NoiseMode switch
            {
                VoxelNoiseMode.Random => SampleVoxelNoise(b).ToArray<Tensor?>(),
                VoxelNoiseMode.Const => layers.Select(l => (Tensor?)l.NoiseConst).ToArray(),
                _ => new Tensor?[layers.Count],
            };
        }
        var w = module.SpaceGenerator.Mapping.call(z, pooledText);
        return module.SpaceGenerator.Synthesis.Forward(w, noise).MoveToOuterDisposeScope();
    }

    /// <summary>Wraps a feature volume [B, FeatureChannels, D, H, W] as a field (the field samples it; it does not copy it).</summary>
    public VoxelSdfField CreateField(Tensor volume) =>
        new(volume, new SdfFeatureDecoder(module.SdfNetwork, module.FeatureNetwork, Options.SdfBiasRadius), Options.Radius, Options.FeatureChannels);

    /// <summary>
    /// Fields of the batch: z = <paramref name="noise"/> [B, ZDim] (drawn from <see cref="NoiseGenerator"/> when null), per-voxel
    /// noise per <see cref="Conv3DNetOptions.NoiseMode"/>, conditioned on <see cref="TextConditioning.Pooled"/>.
    /// </summary>
    public IRadianceField Generate(TextConditioning text, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        using var scope = NewDisposeScope();
        var z = noise ?? SampleLatent(text.Count);
        var volume = Synthesize(text.Pooled, z);
        return CreateField(volume.MoveToOuterDisposeScope());
    }

    /// <summary>Disposes the module.</summary>
    public void Dispose() => module.Dispose();

    private Device ParameterDevice => module.parameters().First().device;

    private Tensor Draw(long[] shape, Generator generator)
    {
        var device = ParameterDevice;
        return DeepInit.MoveTo(randn(shape, ScalarType.Float32, generator.device, generator: generator), device);
    }

    private void CheckLatent(Tensor z, Tensor pooledText)
    {
        ArgumentNullException.ThrowIfNull(z);
        ArgumentNullException.ThrowIfNull(pooledText);
        if (z.dim() != 2 || z.shape[1] != Options.ZDim)
            throw new ArgumentException($"z must be [B, {Options.ZDim}], got [{string.Join(", ", z.shape)}].", nameof(z));
        if (pooledText.dim() != 2 || pooledText.shape[1] != Options.TextDim || pooledText.shape[0] != z.shape[0])
            throw new ArgumentException($"Pooled text must be [{z.shape[0]}, {Options.TextDim}], got [{string.Join(", ", pooledText.shape)}].", nameof(pooledText));
    }
}

/// <summary>
/// The fields of 3DConv-Net: one feature volume per prompt, sampled trilinearly (<c>grid_sample</c>, zeros outside,
/// align_corners = false; world x → W, y → H, z → D) and decoded by the SDF and feature MLPs, SDF + (‖p‖ − r_bias).
/// Row b of the points only ever samples volume b.
/// </summary>
public sealed class VoxelSdfField : IRadianceField, IDisposable
{
    private readonly SdfFeatureDecoder decoder;

    internal VoxelSdfField(Tensor volume, SdfFeatureDecoder decoder, double radius, int channels)
    {
        ArgumentNullException.ThrowIfNull(volume);
        if (volume.dim() != 5 || volume.shape[1] != channels)
            throw new ArgumentException($"Feature volume must be [B, {channels}, D, H, W], got [{string.Join(", ", volume.shape)}].", nameof(volume));
        Volume = volume;
        this.decoder = decoder;
        Radius = radius;
    }

    /// <summary>The feature volume [B, C, D, H, W].</summary>
    public Tensor Volume { get; }

    /// <inheritdoc />
    public FieldKind Kind => FieldKind.SignedDistance;

    /// <inheritdoc />
    public int Count => (int)Volume.shape[0];

    /// <inheritdoc />
    public double Radius { get; }

    /// <summary>Trilinear features [B, N, C] at world points [B, N, 3].</summary>
    public Tensor SampleFeatures(Tensor points)
    {
        SdfFieldMath.CheckPoints(points, Count);
        using var scope = NewDisposeScope();
        long b = points.shape[0], n = points.shape[1];
        var grid = points.div(Radius).view(b, 1, 1, n, 3);
        var sampled = nn.functional.grid_sample(Volume, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Zeros, align_corners: false);
        return sampled.view(b, Volume.shape[1], n).transpose(1, 2).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public FieldSample Query(Tensor points) => decoder.Query(points, SampleFeatures);

    /// <inheritdoc />
    public Tensor QueryGeometry(Tensor points) => decoder.QueryGeometry(points, SampleFeatures);

    /// <summary>
    /// A field with each row repeated <paramref name="times"/> times consecutively (a, a, b, b …), e.g. one field per rendered
    /// view when a prompt is seen from several cameras (upstream <c>repeat_interleave</c>); gradients flow back to this volume.
    /// </summary>
    public VoxelSdfField RepeatInterleave(int times)
    {
        if (times < 1) throw new ArgumentOutOfRangeException(nameof(times), times, "times must be positive.");
        return new VoxelSdfField(Volume.repeat_interleave(times, 0), decoder, Radius, (int)Volume.shape[1]);
    }

    /// <summary>Disposes the feature volume.</summary>
    public void Dispose() => Volume.Dispose();
}
