using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>Configuration of <see cref="HyperInstantNgp"/>; defaults are ScaleDreamer's MG15 configuration (§3.3).</summary>
public sealed record HyperInstantNgpOptions
{
    /// <summary>Shared, text-independent hash grid of the geometry.</summary>
    public HashGridOptions Encoding { get; init; } = HashGridOptions.HyperInstantNgp;

    /// <summary>Width of the pooled text embedding (1024 for SD 2.1's OpenCLIP text tower).</summary>
    public int TextDims { get; init; } = 1024;

    /// <summary>Hidden width of the hypernetwork and of the generated MLPs.</summary>
    public int Neurons { get; init; } = 64;

    /// <summary>Hidden layers of the hypernetwork (1 ⇒ Linear → LayerNorm → SiLU → Linear).</summary>
    public int HyperHiddenLayers { get; init; } = 1;

    /// <summary>Colour feature channels of the field.</summary>
    public int FeatureDims { get; init; } = 3;

    /// <summary>Half-size of the bounding cube [−r, r]³, mapped to the unit cube the hash grid sees.</summary>
    public double Radius { get; init; } = 2.0;

    /// <summary>Radius of the sphere SDF bias ‖p‖ − r added to the SDF; null disables it.</summary>
    public double? SdfSphereBias { get; init; } = 0.5;

    /// <summary>Background configuration.</summary>
    public TextConditionedHashGridBackgroundOptions Background { get; init; } = new();
}

/// <summary>
/// Hyper-iNGP (ScaleDreamer §3.3): a shared multi-resolution hash grid and a hypernetwork mapping each prompt's pooled
/// text embedding to bias-free MLPs 32→64→1 (SDF) and 32→64→3 (colour features), plus its text-conditioned hash-grid
/// background. Module keys: <c>geometry.encoding.params</c>, <c>geometry.hypernet.layers.*</c>,
/// <c>background.encoding.params</c>, <c>background.hypernet.layers.*</c> (the reference's
/// <c>geometry.encoding.encoding.encoding.params</c> is the same flat tcnn tensor under a longer prefix).
/// </summary>
public sealed class HyperInstantNgp : nn.Module, I3DGenerator
{
#pragma warning disable IDE1006 // field names are the state-dict keys
    private readonly HyperInstantNgpGeometry geometry;
    private readonly TextConditionedHashGridBackground background;
#pragma warning restore IDE1006

    /// <summary>Creates the generator with the reference initialisation.</summary>
    /// <param name="options">Configuration; null uses the defaults.</param>
    /// <param name="generator">Random source of the initialisation.</param>
    public HyperInstantNgp(HyperInstantNgpOptions? options = null, Generator? generator = null) : base(nameof(HyperInstantNgp))
    {
        Options = options ?? new HyperInstantNgpOptions();
        geometry = new HyperInstantNgpGeometry(Options, generator);
        background = new TextConditionedHashGridBackground(Options.Background, generator);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public HyperInstantNgpOptions Options { get; }

    /// <summary>The geometry (shared hash grid and hypernetwork).</summary>
    public HyperInstantNgpGeometry Geometry => geometry;

    /// <inheritdoc />
    public nn.Module Module => this;

    /// <inheritdoc />
    public IBackground? Background => background;

    /// <inheritdoc />
    public IReadOnlyDictionary<string, IReadOnlyList<Parameter>> ParameterGroups => new Dictionary<string, IReadOnlyList<Parameter>>
    {
        ["generator"] = geometry.parameters().ToArray(),
        ["background"] = background.parameters().ToArray(),
    };

    /// <summary>Generates the per-prompt fields from the pooled text embeddings; <paramref name="noise"/> is unused (as in the reference).</summary>
    public IRadianceField Generate(TextConditioning text, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return geometry.Generate(text.Pooled);
    }
}

/// <summary>Geometry half of <see cref="HyperInstantNgp"/>: the shared hash grid (<c>encoding</c>) and the hypernetwork (<c>hypernet</c>).</summary>
public sealed class HyperInstantNgpGeometry : nn.Module
{
#pragma warning disable IDE1006 // field names are the state-dict keys
    private readonly HashGridEncoding encoding;
    private readonly LinearHyperNetwork hypernet;
#pragma warning restore IDE1006

    internal HyperInstantNgpGeometry(HyperInstantNgpOptions options, Generator? generator) : base(nameof(HyperInstantNgpGeometry))
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Radius > 0)) throw new ArgumentOutOfRangeException(nameof(options), options.Radius, "Radius must be positive.");
        Options = options;
        encoding = new HashGridEncoding(options.Encoding, generator);
        hypernet = new LinearHyperNetwork(options.TextDims, encoding.OutputDims,
            new[] { ("sdf_weights", new[] { options.Neurons, 1 }), ("feature_weights", new[] { options.Neurons, options.FeatureDims }) },
            options.Neurons, options.HyperHiddenLayers, generator);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public HyperInstantNgpOptions Options { get; }

    /// <summary>The shared hash grid.</summary>
    public HashGridEncoding Encoding => encoding;

    /// <summary>The hypernetwork.</summary>
    public LinearHyperNetwork HyperNetwork => hypernet;

    /// <summary>The "space cache" of B prompts: their generated MLP weights (tensors live in the caller's dispose scope).</summary>
    public IRadianceField Generate(Tensor pooledText)
    {
        ArgumentNullException.ThrowIfNull(pooledText);
        var w = hypernet.Generate(pooledText);
        return new HyperInstantNgpField(this, w["sdf_weights"], w["feature_weights"]);
    }

    /// <summary>SDF [B, N, 1] and optionally features [B, N, C] at world points [B, N, 3] for per-prompt weights.</summary>
    internal (Tensor Sdf, Tensor? Features) Evaluate(Tensor points, Tensor[] sdfWeights, Tensor[]? featureWeights)
    {
        using var scope = NewDisposeScope();
        long b = points.shape[0], n = points.shape[1];
        double r = Options.Radius;
        var unit = points.add(r).div_(2 * r);
        var enc = encoding.forward(unit.reshape(-1, 3)).view(b, n, encoding.OutputDims);
        var sdf = LinearHyperNetwork.Apply(enc, sdfWeights);
        if (Options.SdfSphereBias is double bias)
            sdf = sdf.add(linalg.vector_norm(points, 2, new long[] { -1 }, keepdim: true).sub_(bias));
        Tensor? feat = featureWeights is null ? null : LinearHyperNetwork.Apply(enc, featureWeights);
        return (sdf.MoveToOuterDisposeScope(), feat?.MoveToOuterDisposeScope());
    }
}

/// <summary>B Hyper-iNGP fields: one pair of generated MLPs per prompt, evaluated with batched matrix products (rows never mix).</summary>
internal sealed class HyperInstantNgpField : IRadianceField
{
    private readonly HyperInstantNgpGeometry _geometry;
    private readonly Tensor[] _sdfWeights;
    private readonly Tensor[] _featureWeights;

    public HyperInstantNgpField(HyperInstantNgpGeometry geometry, Tensor[] sdfWeights, Tensor[] featureWeights)
    {
        _geometry = geometry;
        _sdfWeights = sdfWeights;
        _featureWeights = featureWeights;
        Count = (int)sdfWeights[0].shape[0];
    }

    public FieldKind Kind => FieldKind.SignedDistance;

    public int Count { get; }

    public double Radius => _geometry.Options.Radius;

    public FieldSample Query(Tensor points)
    {
        FieldChecks.Points(points, Count);
        var (sdf, feat) = _geometry.Evaluate(points, _sdfWeights, _featureWeights);
        return new FieldSample(sdf, feat!);
    }

    public Tensor QueryGeometry(Tensor points)
    {
        FieldChecks.Points(points, Count);
        return _geometry.Evaluate(points, _sdfWeights, null).Sdf;
    }
}

internal static class FieldChecks
{
    public static void Points(Tensor points, int count)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 3 || points.shape[0] != count || points.shape[2] != 3)
            throw new ArgumentException($"Field points must be [{count}, N, 3], got [{string.Join(", ", points.shape)}].", nameof(points));
    }
}
