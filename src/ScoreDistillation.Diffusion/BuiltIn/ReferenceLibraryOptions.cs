using System.Globalization;
using ScoreDistillation.Rendering;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>How the reference views of the built-in world are rendered and cached.</summary>
public sealed record ReferenceLibraryOptions
{
    /// <summary>Image side S of the references and of the prior (default 64, ScaleDreamer's training render size; 32 for fast tests).</summary>
    public int ImageSize { get; init; } = 64;

    /// <summary>Views per conditional prompt K (default 32).</summary>
    public int ViewsPerPrompt { get; init; } = 32;

    /// <summary>Prompts whose views make up the unconditional distribution; null means every plain "a {colour} {shape}".</summary>
    public IReadOnlyList<string>? UnconditionalPrompts { get; init; }

    /// <summary>Views per prompt in the unconditional set (the first ones of each prompt's sequence; default 2, i.e. 180 views for the whole world).</summary>
    public int UnconditionalViewsPerPrompt { get; init; } = 2;

    /// <summary>Seed of the reference cameras; each prompt draws its cameras from a generator seeded by (seed, prompt).</summary>
    public long Seed { get; init; }

    /// <summary>Half-extent of every object (default <see cref="WorldObject.DefaultSize"/>).</summary>
    public double ObjectSize { get; init; } = WorldObject.DefaultSize;

    /// <summary>Bounding-cube half-size of the object fields (default 2.0 as ScaleDreamer's SDF generators).</summary>
    public double FieldRadius { get; init; } = ProceduralField.DefaultRadius;

    /// <summary>Bake diffuse shading into object colours (default true).</summary>
    public bool Shaded { get; init; } = true;

    /// <summary>Background colour of the reference renders (default white).</summary>
    public (double R, double G, double B) Background { get; init; } = (1, 1, 1);

    /// <summary>The training camera distribution the references are drawn from (default ScaleDreamer's SD cameras).</summary>
    public CameraSamplerOptions Cameras { get; init; } = new();

    /// <summary>
    /// Volume renderer settings (VolSDF; default: the training renderer's inv_std with 32 proposal + 16 importance samples,
    /// no normals, deterministic: mean |Δ| 0.0013 against 128 + 64 samples at 64²). Near and far are replaced by the range
    /// that encloses the object from the nearest and the farthest camera.
    /// </summary>
    public VolumeRendererOptions Renderer { get; init; } = new()
    {
        ProposalSamples = 32,
        ImportanceSamples = 16,
        ComputeNormals = false,
        Stratified = false,
    };

    /// <summary>Objects rendered together (default 4).</summary>
    public int RenderBatch { get; init; } = 4;

    /// <summary>Upper bound on ray samples per renderer call (default 2²⁰); views are split over calls to respect it.</summary>
    public long RenderPointsPerCall { get; init; } = 1L << 20;

    /// <summary>Directory for a disk cache of rendered views keyed by a hash of the settings; null keeps them in memory only.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Device of the references (default CPU).</summary>
    public Device? Device { get; init; }

    /// <summary>Dtype of the references (default float32).</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>The unconditional prompts in canonical form.</summary>
    public IReadOnlyList<string> ResolvedUnconditionalPrompts() =>
        (UnconditionalPrompts ?? WorldVocabulary.AllPlainPrompts()).Select(p => WorldObject.Parse(p).Prompt).Distinct().ToArray();

    /// <summary>Throws if a setting is out of range.</summary>
    public void Validate()
    {
        if (ImageSize < 4) throw new ArgumentException($"ImageSize must be ≥ 4, got {ImageSize}.");
        if (ViewsPerPrompt < 1) throw new ArgumentException($"ViewsPerPrompt must be ≥ 1, got {ViewsPerPrompt}.");
        if (UnconditionalViewsPerPrompt < 1) throw new ArgumentException($"UnconditionalViewsPerPrompt must be ≥ 1, got {UnconditionalViewsPerPrompt}.");
        if (!(ObjectSize > 0) || ObjectSize * 1.5 > FieldRadius) throw new ArgumentException($"ObjectSize {ObjectSize} must be positive and fit FieldRadius {FieldRadius}.");
        if (RenderBatch < 1) throw new ArgumentException($"RenderBatch must be ≥ 1, got {RenderBatch}.");
        if (RenderPointsPerCall < 1) throw new ArgumentException($"RenderPointsPerCall must be ≥ 1, got {RenderPointsPerCall}.");
        if (DType is not (ScalarType.Float32 or ScalarType.Float64)) throw new ArgumentException($"DType must be float32 or float64, got {DType}.");
        if (UnconditionalPrompts is { Count: 0 }) throw new ArgumentException("UnconditionalPrompts must not be empty (use null for the whole world).");
        Renderer.Validate();
        _ = ResolvedUnconditionalPrompts();
    }

    /// <summary>A canonical description of everything that changes the rendered pixels (the disk-cache key).</summary>
    public string Describe()
    {
        var c = Cameras;
        var r = Renderer;
        return string.Create(CultureInfo.InvariantCulture,
            $"builtin-refs/v1;S={ImageSize};seed={Seed};size={ObjectSize:R};radius={FieldRadius:R};shaded={Shaded};bg={Background.R:R},{Background.G:R},{Background.B:R};" +
            $"cam=el[{c.Elevation.Min:R},{c.Elevation.Max:R}],az[{c.Azimuth.Min:R},{c.Azimuth.Max:R}],d[{c.Distance.Min:R},{c.Distance.Max:R}],fov[{c.FovY.Min:R},{c.FovY.Max:R}]," +
            $"p={c.UniformInDegreesProbability:R},strat={c.BatchUniformAzimuth},v={c.ViewsPerSample},rel={c.RelativeRadius};" +
            $"ren=p{r.ProposalSamples},i{r.ImportanceSamples},inv{r.InvStd:R},{r.Material};dtype={DType}");
    }
}
