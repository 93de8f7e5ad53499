using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>Density bias added to the raw density of a prompt-specific NeRF (threestudio <c>density_bias</c>).</summary>
public enum DensityBias
{
    /// <summary>No bias.</summary>
    None,
    /// <summary>Magic3D blob: scale·(1 − ‖p‖/std).</summary>
    BlobMagic3D,
    /// <summary>DreamFusion blob: scale·exp(−½‖p‖²/std²).</summary>
    BlobDreamFusion,
}

/// <summary>Configuration of <see cref="InstantNgp"/>; defaults are threestudio's <c>implicit-volume</c> (density) geometry.</summary>
public sealed record InstantNgpOptions
{
    /// <summary>Whether the field is a density (NeRF) or an SDF (VolSDF).</summary>
    public FieldKind Kind { get; init; } = FieldKind.Density;

    /// <summary>Hash grid configuration.</summary>
    public HashGridOptions Encoding { get; init; } = new();

    /// <summary>Half-size of the bounding cube [−r, r]³ mapped to the unit cube.</summary>
    public double Radius { get; init; } = 1.0;

    /// <summary>Hidden width of the MLPs.</summary>
    public int Neurons { get; init; } = 64;

    /// <summary>Hidden layers of the MLPs (threestudio <c>VanillaMLP</c>, bias-free, ReLU).</summary>
    public int HiddenLayers { get; init; } = 1;

    /// <summary>Colour feature channels.</summary>
    public int FeatureDims { get; init; } = 3;

    /// <summary>Density bias (density mode only).</summary>
    public DensityBias DensityBias { get; init; } = DensityBias.BlobMagic3D;

    /// <summary>Blob scale (threestudio <c>density_blob_scale</c>).</summary>
    public double DensityBlobScale { get; init; } = 10.0;

    /// <summary>Blob standard deviation (threestudio <c>density_blob_std</c>).</summary>
    public double DensityBlobStd { get; init; } = 0.5;

    /// <summary>Radius of the sphere SDF bias ‖p‖ − r (SDF mode only); null disables it.</summary>
    public double? SdfSphereBias { get; init; }
}

/// <summary>
/// Prompt-specific Instant-NGP (threestudio <c>implicit-volume</c> / <c>implicit-sdf</c>): hash grid → bias-free MLPs
/// for density (or SDF) and colour features. The text is ignored; every prompt row sees the same field. Keys
/// <c>encoding.params</c>, <c>density_network.layers.*</c> or <c>sdf_network.layers.*</c>, <c>feature_network.layers.*</c>.
/// </summary>
public sealed class InstantNgp : nn.Module, I3DGenerator
{
#pragma warning disable IDE1006 // field names are the state-dict keys
    private readonly HashGridEncoding encoding;
    private readonly VanillaMlp? density_network;
    private readonly VanillaMlp? sdf_network;
    private readonly VanillaMlp feature_network;
#pragma warning restore IDE1006

    /// <summary>Creates the field; MLP weights use PyTorch's default Linear initialisation drawn from <paramref name="generator"/>.</summary>
    public InstantNgp(InstantNgpOptions? options = null, Generator? generator = null) : base(nameof(InstantNgp))
    {
        Options = options ?? new InstantNgpOptions();
        if (!(Options.Radius > 0)) throw new ArgumentOutOfRangeException(nameof(options), Options.Radius, "Radius must be positive.");
        if (Options.Neurons < 1 || Options.HiddenLayers < 1 || Options.FeatureDims < 1)
            throw new ArgumentOutOfRangeException(nameof(options), "Neurons, hidden layers and feature dims must be positive.");
        encoding = new HashGridEncoding(Options.Encoding, generator);
        var geometryNet = new VanillaMlp(encoding.OutputDims, 1, Options.Neurons, Options.HiddenLayers, generator);
        if (Options.Kind == FieldKind.Density) density_network = geometryNet; else sdf_network = geometryNet;
        feature_network = new VanillaMlp(encoding.OutputDims, Options.FeatureDims, Options.Neurons, Options.HiddenLayers, generator);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public InstantNgpOptions Options { get; }

    /// <summary>The hash grid.</summary>
    public HashGridEncoding Encoding => encoding;

    /// <inheritdoc />
    public nn.Module Module => this;

    /// <summary>Always null: a prompt-specific NeRF uses a renderer-side background (e.g. the SH environment MLP).</summary>
    public IBackground? Background => null;

    /// <summary>One group, "generator" (there is no owned background).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<Parameter>> ParameterGroups => new Dictionary<string, IReadOnlyList<Parameter>>
    {
        ["generator"] = parameters().ToArray(),
    };

    /// <summary>The same field for each of the B prompts (text and noise are ignored).</summary>
    public IRadianceField Generate(TextConditioning text, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new InstantNgpField(this, text.Count);
    }

    internal (Tensor Geometry, Tensor? Features) Evaluate(Tensor points, bool withFeatures)
    {
        using var scope = NewDisposeScope();
        long b = points.shape[0], n = points.shape[1];
        double r = Options.Radius;
        var flat = points.reshape(-1, 3);
        var enc = encoding.forward(flat.add(r).div_(2 * r));
        var geo = (density_network ?? sdf_network)!.forward(enc);
        geo = Options.Kind == FieldKind.Density ? AddDensityBias(geo, flat) : AddSdfBias(geo, flat);
        var feat = withFeatures ? feature_network.forward(enc).view(b, n, Options.FeatureDims).MoveToOuterDisposeScope() : null;
        return (geo.view(b, n, 1).MoveToOuterDisposeScope(), feat);
    }

    private Tensor AddDensityBias(Tensor density, Tensor points)
    {
        switch (Options.DensityBias)
        {
            case DensityBias.None:
                return density;
            case DensityBias.BlobMagic3D:
                {
                    var norm = linalg.vector_norm(points, 2, new long[] { -1 }, keepdim: true);
                    return density.add(norm.div(Options.DensityBlobStd).neg_().add_(1.0).mul_(Options.DensityBlobScale));
                }
            case DensityBias.BlobDreamFusion:
                {
                    var sq = points.square().sum(-1, keepdim: true);
                    return density.add(sq.mul(-0.5 / (Options.DensityBlobStd * Options.DensityBlobStd)).exp_().mul_(Options.DensityBlobScale));
                }
            default:
                throw new InvalidOperationException($"Unknown density bias {Options.DensityBias}.");
        }
    }

    private Tensor AddSdfBias(Tensor sdf, Tensor points) => Options.SdfSphereBias is double radius
        ? sdf.add(linalg.vector_norm(points, 2, new long[] { -1 }, keepdim: true).sub_(radius))
        : sdf;
}

/// <summary>B copies of one prompt-specific field.</summary>
internal sealed class InstantNgpField : IRadianceField
{
    private readonly InstantNgp _owner;

    public InstantNgpField(InstantNgp owner, int count)
    {
        _owner = owner;
        Count = count;
    }

    public FieldKind Kind => _owner.Options.Kind;

    public int Count { get; }

    public double Radius => _owner.Options.Radius;

    public FieldSample Query(Tensor points)
    {
        FieldChecks.Points(points, Count);
        var (geo, feat) = _owner.Evaluate(points, true);
        return new FieldSample(geo, feat!);
    }

    public Tensor QueryGeometry(Tensor points)
    {
        FieldChecks.Points(points, Count);
        return _owner.Evaluate(points, false).Geometry;
    }
}

/// <summary>threestudio <c>VanillaMLP</c>: bias-free Linear/ReLU stack under the key <c>layers</c>.</summary>
internal sealed class VanillaMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field name is the state-dict key
    private readonly Sequential layers;
#pragma warning restore IDE1006

    public VanillaMlp(int inDims, int outDims, int neurons, int hiddenLayers, Generator? generator) : base(nameof(VanillaMlp))
    {
        var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
        int width = inDims;
        for (int i = 0; i < hiddenLayers; i++)
        {
            modules.Add(($"{modules.Count}", DefaultInit(nn.Linear(width, neurons, hasBias: false), generator)));
            modules.Add(($"{modules.Count}", nn.ReLU()));
            width = neurons;
        }
        modules.Add(($"{modules.Count}", DefaultInit(nn.Linear(width, outDims, hasBias: false), generator)));
        layers = nn.Sequential(modules);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => layers.forward(input);

    private static Linear DefaultInit(Linear linear, Generator? generator)
    {
        // PyTorch's default (kaiming-uniform, a = √5) is U(−1/√fan_in, 1/√fan_in); redrawn from the given generator.
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            var w = linear.weight!;
            double bound = 1.0 / Math.Sqrt(w.shape[1]);
            w.copy_(rand(w.shape, w.dtype, generator: generator).mul_(2 * bound).sub_(bound));
        }
        return linear;
    }
}
