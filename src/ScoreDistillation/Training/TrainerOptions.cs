using ScoreDistillation.Rendering;
using static TorchSharp.torch;

namespace ScoreDistillation.Training;

/// <summary>Which optimizer trains the generator and background.</summary>
public enum OptimizerKind
{
    /// <summary>Adam (reference β = (0, 0.99), ε = 1e-8).</summary>
    Adam,
    /// <summary>Adan (reference β = (0.98, 0.92, 0.99), ε = 1e-15).</summary>
    Adan,
}

/// <summary>
/// Settings of a <see cref="Trainer"/>. Defaults are ScaleDreamer's Hyper-iNGP MG15 recipe (<c>asd_sd_hyper_iNGP_50k.yaml</c>):
/// 1 prompt × 1 view per step at 64², Adam β = (0, 0.99), learning rates 4e-3 (generator) / 1e-3 (background), λ_sparsity 20,
/// λ_opaque [40000, 0→10, 50000], λ_eikonal [1, 100→1, 5000]. Use <see cref="Rescaled"/> to shrink the schedules to a short run.
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 50_000;

    /// <summary>Prompts per micro-batch (ScaleDreamer: 1 per GPU).</summary>
    public int PromptsPerStep { get; init; } = 1;

    /// <summary>
    /// Camera samples rendered per prompt in each micro-batch (default 1, as the reference). More views per step give a
    /// less noisy 3D gradient for the same number of steps; each sample has the prior's views per sample (4 for MVDream).
    /// </summary>
    public int ViewsPerPrompt { get; init; } = 1;

    /// <summary>Micro-batches accumulated per optimizer step (the MVDream config uses 2 or 8).</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>Training render side (64).</summary>
    public int RenderSize { get; init; } = 64;

    /// <summary>Optimizer.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;

    /// <summary>Adam β₁, β₂.</summary>
    public (double Beta1, double Beta2) AdamBetas { get; init; } = (0.0, 0.99);

    /// <summary>Adam ε.</summary>
    public double AdamEps { get; init; } = 1e-8;

    /// <summary>Adan β₁, β₂, β₃.</summary>
    public (double Beta1, double Beta2, double Beta3) AdanBetas { get; init; } = (0.98, 0.92, 0.99);

    /// <summary>Adan ε.</summary>
    public double AdanEps { get; init; } = 1e-15;

    /// <summary>Learning rate per parameter-group name ("generator", "background", …).</summary>
    public IReadOnlyDictionary<string, double> LearningRates { get; init; } = new Dictionary<string, double> { ["generator"] = 4e-3, ["background"] = 1e-3 };

    /// <summary>Learning rate of groups not named in <see cref="LearningRates"/>.</summary>
    public double DefaultLearningRate { get; init; } = 4e-3;

    /// <summary>λ of the distillation loss.</summary>
    public StepSchedule DistillationWeight { get; init; } = 1.0;

    /// <summary>λ_sparsity of mean(√(opacity² + 0.01)).</summary>
    public StepSchedule SparsityWeight { get; init; } = 20.0;

    /// <summary>λ_opaque of the opacity entropy.</summary>
    public StepSchedule OpaqueWeight { get; init; } = new(40_000, 0, 10, 50_000);

    /// <summary>λ_eikonal of mean((‖∇sdf‖ − 1)²) (SDF fields only).</summary>
    public StepSchedule EikonalWeight { get; init; } = new(1, 100, 1, 5_000);

    /// <summary>
    /// How the eikonal term gets ∇sdf: null (default) uses the renderer's analytic normals (a double backward; needs
    /// <see cref="VolumeRendererOptions.ComputeNormals"/>); a value uses central differences of that step at
    /// <see cref="EikonalPoints"/> random points per prompt in the field's bounding cube, which needs no normals.
    /// </summary>
    public double? EikonalFiniteDifference { get; init; }

    /// <summary>Random points per prompt for the finite-difference eikonal term (default 4096).</summary>
    public int EikonalPoints { get; init; } = 4096;

    /// <summary>
    /// Half-size of the cube the finite-difference eikonal points are drawn from (default null: the field's radius).
    /// A cube just larger than the object puts most points near its surface, where the term matters.
    /// </summary>
    public double? EikonalExtent { get; init; }

    /// <summary>
    /// Draw the finite-difference eikonal points near the current surface (default false: uniform). The trainer draws
    /// 8 × <see cref="EikonalPoints"/> uniform candidates and keeps the <see cref="EikonalPoints"/> with the smallest |sdf|,
    /// because the shell around the zero level set is where an SDF goes steep and where uniform points rarely land.
    /// </summary>
    public bool EikonalNearSurface { get; init; }

    /// <summary>Training camera distribution (ScaleDreamer's SD cameras by default).</summary>
    public CameraSamplerOptions Cameras { get; init; } = new();

    /// <summary>Width of the generator's latent noise z (0 for generators without noise, e.g. Hyper-iNGP).</summary>
    public int NoiseDims { get; init; }

    /// <summary>Seed of the trainer's random stream (prompt choice, cameras, stratification, noise).</summary>
    public long Seed { get; init; }

    /// <summary>Evaluate (renders + the evaluator callback) every this many steps; 0 only at the end.</summary>
    public int EvaluateEvery { get; init; }

    /// <summary>Write a checkpoint every this many steps (needs <see cref="OutputDirectory"/>); 0 only at the end.</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Folder for checkpoints and evaluation renders; null writes nothing.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Views of evaluation orbits.</summary>
    public int EvaluationViews { get; init; } = 8;

    /// <summary>Side of evaluation renders.</summary>
    public int EvaluationSize { get; init; } = 64;

    /// <summary>Camera distance of evaluation orbits (reference 1.5).</summary>
    public double EvaluationDistance { get; init; } = 1.5;

    /// <summary>Field of view of evaluation orbits (reference 70°).</summary>
    public double EvaluationFovY { get; init; } = 70;

    /// <summary>Elevation of evaluation orbits (reference 15°).</summary>
    public double EvaluationElevation { get; init; } = 15;

    /// <summary>Device of the trainable modules and renders (the generator must already live there); null uses the prior's.</summary>
    public Device? Device { get; init; }

    /// <summary>Dtype of renders (float32; the trainable state stays float32).</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// The same recipe for <paramref name="steps"/> steps: every schedule's step numbers scaled by steps/<see cref="Steps"/>
    /// (ScaleDreamer's 50k-step ramps become proportionally shorter).
    /// </summary>
    public TrainerOptions Rescaled(int steps)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps));
        double f = (double)steps / Steps;
        return this with
        {
            Steps = steps,
            DistillationWeight = DistillationWeight.Rescale(f),
            SparsityWeight = SparsityWeight.Rescale(f),
            OpaqueWeight = OpaqueWeight.Rescale(f),
            EikonalWeight = EikonalWeight.Rescale(f),
        };
    }

    /// <summary>Throws when a setting is out of range.</summary>
    public void Validate()
    {
        if (Steps < 1) throw new ArgumentException($"Steps must be ≥ 1, got {Steps}.");
        if (PromptsPerStep < 1) throw new ArgumentException($"PromptsPerStep must be ≥ 1, got {PromptsPerStep}.");
        if (EikonalFiniteDifference is { } h && !(h > 0)) throw new ArgumentException($"EikonalFiniteDifference must be > 0, got {h}.");
        if (EikonalExtent is { } x && !(x > 0)) throw new ArgumentException($"EikonalExtent must be > 0, got {x}.");
        if (EikonalPoints < 1) throw new ArgumentException($"EikonalPoints must be ≥ 1, got {EikonalPoints}.");
        if (ViewsPerPrompt < 1) throw new ArgumentException($"ViewsPerPrompt must be ≥ 1, got {ViewsPerPrompt}.");
        if (GradientAccumulation < 1) throw new ArgumentException($"GradientAccumulation must be ≥ 1, got {GradientAccumulation}.");
        if (RenderSize < 4) throw new ArgumentException($"RenderSize must be ≥ 4, got {RenderSize}.");
        if (EvaluateEvery < 0 || CheckpointEvery < 0) throw new ArgumentException("EvaluateEvery and CheckpointEvery must be ≥ 0.");
        if (EvaluationViews < 1 || EvaluationSize < 4) throw new ArgumentException("EvaluationViews must be ≥ 1 and EvaluationSize ≥ 4.");
    }
}
