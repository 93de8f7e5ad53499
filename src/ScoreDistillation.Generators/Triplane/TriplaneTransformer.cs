using ScoreDistillation.Generators.Conv3D;
using ScoreDistillation.Generators.Triplane;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>
/// ScaleDreamer's Triplane-Transformer (adapted from OpenLRM): 3·R² learned tokens cross-attend to the text tokens
/// through pre-LN transformer blocks, a shared transposed convolution turns them into three planes [B, 3, C, 2R, 2R],
/// and each point is decoded from its concatenated plane features (EG3D sampling, fixed plane axes) by two bias-free
/// MLPs into an SDF (with a sphere bias) and raw colour features. No noise input. Samples of a batch never mix.
/// </summary>
public sealed class TriplaneTransformer : I3DGenerator
{
    private readonly SdfGeometryModule<TriplaneTransformerNetwork> module;

    /// <summary>Builds the network.</summary>
    /// <param name="options">Sizes; <see cref="TriplaneTransformerOptions.Reference"/> when null.</param>
    /// <param name="device">Device of the parameters (CPU when null; <c>meta</c> builds without memory).</param>
    /// <param name="initGenerator">Random source of the initial weights (the global RNG when null).</param>
    public TriplaneTransformer(TriplaneTransformerOptions? options = null, Device? device = null, Generator? initGenerator = null)
    {
        Options = options ?? TriplaneTransformerOptions.Reference;
        Options.Validate();
        var dev = device ?? CPU;
        module = new SdfGeometryModule<TriplaneTransformerNetwork>("TriplaneTransformerModule", new TriplaneTransformerNetwork(Options, dev, initGenerator),
            3 * Options.PlaneChannels, Options.MlpHidden, Options.MlpHiddenLayers, Options.Radius, dev, initGenerator);
    }

    /// <summary>The configuration.</summary>
    public TriplaneTransformerOptions Options { get; }

    /// <inheritdoc />
    public nn.Module Module => module;

    /// <inheritdoc />
    /// <remarks>One group, "generator" (upstream "geometry"); the environment-map background is not owned by this generator.</remarks>
    public IReadOnlyDictionary<string, IReadOnlyList<Parameter>> ParameterGroups =>
        new Dictionary<string, IReadOnlyList<Parameter>> { ["generator"] = module.parameters().ToArray() };

    /// <inheritdoc />
    public IBackground? Background => null;

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => module.parameters().Sum(p => p.numel());

    /// <summary>Triplanes [B, 3, PlaneChannels, 2R, 2R] (planes XY, XZ, ZY) from text tokens [B, S, TextDim] (the upstream "space cache").</summary>
    public Tensor GeneratePlanes(Tensor textTokens)
    {
        ArgumentNullException.ThrowIfNull(textTokens);
        if (textTokens.dim() != 3 || textTokens.shape[2] != Options.TextDim || textTokens.shape[1] < 1)
            throw new ArgumentException($"Text tokens must be [B, S, {Options.TextDim}], got [{string.Join(", ", textTokens.shape)}].", nameof(textTokens));
        return module.SpaceGenerator.call(textTokens);
    }

    /// <summary>Wraps triplanes [B, 3, C, H, W] as a field (the field samples them; it does not copy them).</summary>
    public TriplaneSdfField CreateField(Tensor planes) =>
        new(planes, new SdfFeatureDecoder(module.SdfNetwork, module.FeatureNetwork, Options.SdfBiasRadius), Options.Radius, Options.PlaneChannels);

    /// <summary>Fields of the batch from <see cref="TextConditioning.Tokens"/>. The generator takes no noise; <paramref name="noise"/> is ignored.</summary>
    public IRadianceField Generate(TextConditioning text, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return CreateField(GeneratePlanes(text.Tokens));
    }

    /// <summary>Disposes the module.</summary>
    public void Dispose() => module.Dispose();
}

/// <summary>
/// The fields of the Triplane-Transformer: world points p ∈ [−r, r]³ are mapped to q = p / r ∈ [−1, 1]³ and projected
/// onto the planes XY → (x, y), XZ → (x, z), ZY → (z, y) (EG3D with the issue-67 axes; first coordinate → W, second → H),
/// sampled bilinearly (zeros outside, align_corners = false) and concatenated plane-major into 3C features.
/// Row b of the points only ever samples the planes of field b.
/// </summary>
public sealed class TriplaneSdfField : IRadianceField, IDisposable
{
    private readonly SdfFeatureDecoder decoder;

    internal TriplaneSdfField(Tensor planes, SdfFeatureDecoder decoder, double radius, int channels)
    {
        ArgumentNullException.ThrowIfNull(planes);
        if (planes.dim() != 5 || planes.shape[1] != 3 || planes.shape[2] != channels)
            throw new ArgumentException($"Triplanes must be [B, 3, {channels}, H, W], got [{string.Join(", ", planes.shape)}].", nameof(planes));
        Planes = planes;
        this.decoder = decoder;
        Radius = radius;
    }

    /// <summary>The planes [B, 3, C, H, W].</summary>
    public Tensor Planes { get; }

    /// <inheritdoc />
    public FieldKind Kind => FieldKind.SignedDistance;

    /// <inheritdoc />
    public int Count => (int)Planes.shape[0];

    /// <inheritdoc />
    public double Radius { get; }

    /// <summary>Concatenated plane features [B, N, 3C] at world points [B, N, 3] (channels plane-major: XY, XZ, ZY).</summary>
    public Tensor SampleFeatures(Tensor points)
    {
        SdfFieldMath.CheckPoints(points, Count);
        using var scope = NewDisposeScope();
        long b = points.shape[0], n = points.shape[1], c = Planes.shape[2];
        var q = points.div(Radius);
        var x = q[.., .., 0..1];
        var y = q[.., .., 1..2];
        var z = q[.., .., 2..3];
        // [B, 3, N, 2] → [3B, 1, N, 2], matching planes viewed as [3B, C, H, W].
        var grid = stack([cat([x, y], -1), cat([x, z], -1), cat([z, y], -1)], 1).view(b * 3, 1, n, 2);
        var flat = Planes.view(b * 3, c, Planes.shape[3], Planes.shape[4]);
        var sampled = nn.functional.grid_sample(flat, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Zeros, align_corners: false);
        // [3B, C, 1, N] → [B, N, 3, C] → [B, N, 3C]
        var features = sampled.view(b, 3, c, n).permute(0, 3, 1, 2).reshape(b, n, 3 * c);
        return features.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public FieldSample Query(Tensor points) => decoder.Query(points, SampleFeatures);

    /// <inheritdoc />
    public Tensor QueryGeometry(Tensor points) => decoder.QueryGeometry(points, SampleFeatures);

    /// <summary>
    /// A field with each row repeated <paramref name="times"/> times consecutively (a, a, b, b …), e.g. the 4 views per prompt
    /// of the multi-view prior (upstream <c>repeat_interleave</c>); gradients flow back to these planes.
    /// </summary>
    public TriplaneSdfField RepeatInterleave(int times)
    {
        if (times < 1) throw new ArgumentOutOfRangeException(nameof(times), times, "times must be positive.");
        return new TriplaneSdfField(Planes.repeat_interleave(times, 0), decoder, Radius, (int)Planes.shape[2]);
    }

    /// <summary>Disposes the planes.</summary>
    public void Dispose() => Planes.Dispose();
}
