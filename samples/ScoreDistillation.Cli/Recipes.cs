using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Cli;

/// <summary>Everything a run is built from, chosen for the built-in prior on a small CPU.</summary>
sealed record Recipe
{
    public required Func<int, Generator, I3DGenerator> CreateGenerator { get; init; }
    public required VolumeRendererOptions Renderer { get; init; }
    public required TrainerOptions Trainer { get; init; }
    public SdsOptions Sds { get; init; } = new() { Guidance = new() { GuidanceScale = 7.5, ViewDependent = null } };
    public CsdOptions Csd { get; init; } = new() { Guidance = new() { ViewDependent = null } };
    public VsdOptions Vsd { get; init; } = new() { Guidance = new() { ViewDependent = null } };
    public AsdOptions Asd { get; init; } = new() { Guidance = AsdOptions.Default.Guidance with { ViewDependent = null } };
    public IsmOptions Ism { get; init; } = new();
    public double MeshExtent { get; init; } = 1.0;
    public double DensityThreshold { get; init; } = Recipes.DefaultDensityThreshold;

    public ITrainableNoisePredictor CreateParticle(IDiffusionPrior prior, Generator g)
    {
        int textDim;
        using (var probe = prior.EncodeText(new[] { "" })) textDim = (int)probe.Tokens.shape[2];
        return new CameraConditionedNoisePredictor(prior.LatentShape, textDim, hidden: 32, seed: (long)g.initial_seed());
    }
}

/// <summary>The CPU recipes of the sample.</summary>
static class Recipes
{
    public static double DefaultDensityThreshold { get; } =
        double.TryParse(Environment.GetEnvironmentVariable("SD_DENSITY_THRESHOLD"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var t) ? t : 5.0;
    public const int ImageSize = 32;

    /// <summary>Radius of the sphere the prompt-specific SDF starts from (the built-in world's objects have size 0.3).</summary>
    public const double SphereInitRadius = 0.28;

    /// <summary>The built-in prior variants of <c>--builtin-prior</c>.</summary>
    public static readonly string[] BuiltInModes = { "posed", "camera-aware", "view-agnostic" };

    /// <summary>The default <c>--builtin-prior</c>.</summary>
    public const string DefaultBuiltInMode = "posed";

    /// <summary>Field of view of the posed built-in prior and of the training cameras that go with it (the middle of ScaleDreamer's 40°–70°).</summary>
    public const double PosedFovY = 55;

    /// <summary>
    /// CFG scale of SDS, VSD and ASD under the posed built-in prior. The posed conditional is already exact, so CFG only
    /// adds the push away from the unconditional mixture: at 2 the renders turn saturated and fuzzy (colour error 0.17
    /// against 0.08 at 1, same IoU; docs/results.md).
    /// </summary>
    public const double PosedGuidanceScale = 1.0;

    /// <summary>
    /// The built-in prior of the sample. The unconditional distribution is a small, diverse slice of the world (the
    /// trained prompts plus plain prompts evenly spread over every colour and shape, 12 in all) so that its reference
    /// views render in seconds on a small CPU instead of the whole world's 90 × 2 views.
    /// </summary>
    public static BuiltInPriorOptions BuiltInPrior(Device device, IReadOnlyList<string> prompts, string mode = DefaultBuiltInMode) => new()
    {
        PosedFovY = Mode(mode) == "posed" ? PosedFovY : null,
        CameraAware = Mode(mode) == "camera-aware",
        References = new ReferenceLibraryOptions
        {
            ImageSize = ImageSize,
            Device = device,
            ViewsPerPrompt = 16,
            UnconditionalPrompts = UnconditionalSlice(prompts),
            UnconditionalViewsPerPrompt = 2,
            // The unconditional views must come from the training field of view: at other fields of view the objects
            // have other sizes in the frame, and the classifier-free term would push the renders' size away from theirs.
            Cameras = Mode(mode) == "posed" ? new CameraSamplerOptions { FovY = (PosedFovY, PosedFovY) } : new CameraSamplerOptions(),
            // Rendered once per machine, then read from disk.
            CacheDirectory = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "ScoreDistillation", "builtin-references"),
        },
    };

    static string Mode(string mode)
    {
        var m = mode.Trim().ToLowerInvariant();
        return BuiltInModes.Contains(m) ? m : throw new CliException($"--builtin-prior '{mode}' is unknown; use one of: {string.Join(", ", BuiltInModes)}.");
    }

    static IReadOnlyList<string>? UnconditionalSlice(IReadOnlyList<string> prompts)
    {
        var known = prompts.Where(p => WorldObject.TryParse(p, out _)).Select(p => WorldObject.Parse(p).Prompt).Distinct().ToArray();
        if (known.Length == 0) return null;
        // Evenly spaced over the colour-major list, so every colour and every shape appears. A slice of look-alikes
        // (say, cubes of every colour for "a red cube") would make the classifier-free term push away from the shape
        // itself: with such a slice, generate's IoU was 0.57 instead of 0.74 at CFG 2 (docs/results.md).
        var all = WorldVocabulary.AllPlainPrompts();
        int stride = Math.Max(1, all.Count / 12);
        var spread = all.Where((_, i) => i % stride == 0);
        return known.Concat(spread).Distinct().Take(Math.Max(12, known.Length + 4)).ToArray();
    }

    public static Recipe For(string generator, bool amortized, int? steps, long seed, Device device)
    {
        var cameras = new CameraSamplerOptions();
        var renderer = new VolumeRendererOptions
        {
            ProposalSamples = 32,
            ImportanceSamples = 32,
            Near = 0.1,
            Far = 2.6,
            DensityBias = Rendering.DensityBias.None,
            ComputeNormals = false,
        };
        // Both recipes: 32² renders, Adam (0.9, 0.99), no sparsity or opacity terms, and the near-surface finite-difference
        // eikonal. Without it the SDF turns into a steep thin shell whose zero set outgrows the rendered surface;
        // analytic normals (a double backward through the hash grid) cost ~10× per step. Measurements: docs/results.md.
        var common = new TrainerOptions
        {
            RenderSize = ImageSize,
            AdamBetas = (0.9, 0.99),
            SparsityWeight = 0.0,
            OpaqueWeight = 0.0,
            EikonalWeight = 10.0,
            EikonalFiniteDifference = 0.01,
            EikonalPoints = 1024,
            EikonalExtent = 0.6,
            EikonalNearSurface = true,
            Cameras = cameras,
            Seed = seed,
            Device = device,
        };
        if (generator == "ingp")
        {
            // SDF started as a sphere of the built-in objects' scale (radius 0.28 ≈ the world's size 0.3).
            var trainer = common with
            {
                Steps = steps ?? 60,
                LearningRates = new Dictionary<string, double> { ["generator"] = 1e-2 },
                EvaluateEvery = 0,
            };
            return new Recipe
            {
                CreateGenerator = (_, g) => new InstantNgp(new InstantNgpOptions
                {
                    Kind = FieldKind.SignedDistance,
                    Radius = 1.0,
                    SdfSphereBias = SphereInitRadius,
                    Encoding = new HashGridOptions { Levels = 8, FeaturesPerLevel = 2, Log2TableSize = 15, BaseResolution = 8, PerLevelScale = 1.4 },
                    Neurons = 32,
                }, g),
                Renderer = renderer,
                Trainer = trainer,
            };
        }
        // Hyper-iNGP shares the near-surface eikonal (AmortizedTrainingTests measures it).
        var hyperTrainer = common with { Steps = steps ?? (amortized ? 2000 : 600) };
        return new Recipe
        {
            CreateGenerator = (textDims, g) => new HyperInstantNgp(new HyperInstantNgpOptions
            {
                TextDims = textDims,
                Encoding = new HashGridOptions { Levels = 8, FeaturesPerLevel = 2, Log2TableSize = 15, BaseResolution = 8, PerLevelScale = 1.4 },
                Background = new TextConditionedHashGridBackgroundOptions { TextDims = textDims, Encoding = new HashGridOptions { Levels = 4, FeaturesPerLevel = 2, Log2TableSize = 12, BaseResolution = 8, PerLevelScale = 1.0 } },
            }, g),
            Renderer = renderer,
            Trainer = hyperTrainer,
        };
    }
}
