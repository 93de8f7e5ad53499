using ScoreDistillation.Priors;

namespace ScoreDistillation.Distillers;

/// <summary>Score Distillation Sampling (DreamFusion / threestudio <c>stable-diffusion-guidance</c>): g = w(t)·(ε̂_cfg − ε).</summary>
public sealed record SdsOptions
{
    /// <summary>Shared options; default threestudio SDS: s = 100 in threestudio's form ε_c + s(ε_c − ε_u), t ∈ [20, 980], w = 1 − ᾱ_t.</summary>
    public GuidanceOptions Guidance { get; init; } = new() { GuidanceScale = 100, CfgForm = CfgForm.ThreestudioSds };

    /// <summary>threestudio's dreamfusion-sd defaults.</summary>
    public static SdsOptions Threestudio => new();

    /// <summary>Magic3D coarse stage (uniform weighting).</summary>
    public static SdsOptions Magic3DCoarse => new() { Guidance = new() { GuidanceScale = 100, CfgForm = CfgForm.ThreestudioSds, Weighting = TimestepWeighting.Uniform } };

    /// <summary>Fantasia3D (w = √ᾱ(1 − ᾱ), t ∈ [20, 500]).</summary>
    public static SdsOptions Fantasia3D => new() { Guidance = new() { GuidanceScale = 100, CfgForm = CfgForm.ThreestudioSds, Weighting = TimestepWeighting.SqrtAlphaBarTimesOneMinusAlphaBar, MaxStepPercent = 0.5 } };
}

/// <summary>
/// Classifier Score Distillation (CVMI-Lab): g = w(t)·(a·ε_c + b·ε_neg + c·ε_null + d·ε) [+ w·p·Σ_i w_i·perp(e_i, e_pos)],
/// with ε_neg the negative-prompt prediction and ε_null the "" prediction. All four scales are schedules.
/// </summary>
public sealed record CsdOptions
{
    /// <summary>Shared options (the guidance scale is unused: CSD's scale lives in the four coefficients).</summary>
    public GuidanceOptions Guidance { get; init; } = new();

    /// <summary>a, cond_scale (1).</summary>
    public ScalarSchedule CondScale { get; init; } = 1.0;

    /// <summary>b, uncond_scale on the negative-prompt prediction (0).</summary>
    public ScalarSchedule UncondScale { get; init; } = 0.0;

    /// <summary>c, null_scale on the "" prediction (−1).</summary>
    public ScalarSchedule NullScale { get; init; } = -1.0;

    /// <summary>d, noise_scale on ε (0).</summary>
    public ScalarSchedule NoiseScale { get; init; } = 0.0;

    /// <summary>p, perpneg_scale: weight of the Perp-Neg term when view-dependent Perp-Neg is on (CSD's IF config: 3).</summary>
    public ScalarSchedule PerpNegScale { get; init; } = 0.0;

    /// <summary>grad_normalize: g ← g/(‖g‖₂ + 1e-8) after clipping (default false).</summary>
    public bool NormalizeGradient { get; init; }

    /// <summary>The CSD default g = w(ε_c − ε_null).</summary>
    public static CsdOptions Default => new();

    /// <summary>csd-sd-refine: b [0, −1, −0.5, 10000], c [0, 0, −0.5, 10000], t ∈ [20, 500].</summary>
    public static CsdOptions StableDiffusionRefine => new()
    {
        UncondScale = ScalarSchedule.Linear(0, -1, -0.5, 10000),
        NullScale = ScalarSchedule.Linear(0, 0, -0.5, 10000),
        Guidance = new() { MaxStepPercent = 0.5 },
    };
}

/// <summary>
/// Variational Score Distillation (ProlificDreamer, threestudio <c>stable-diffusion-vsd-guidance</c>):
/// g = w(t)·(ε̂_cfg(x_t) − ε_φ(x_t; y, c)), plus ε_φ's own training step.
/// </summary>
public sealed record VsdOptions
{
    /// <summary>Shared options: pretrained CFG 7.5 (standard form), w = 1 − ᾱ_t, t ∈ [20, 980].</summary>
    public GuidanceOptions Guidance { get; init; } = new();

    /// <summary>guidance_scale_lora: ε_φ = ε_φ(c=0) + s_φ·(ε_φ(c) − ε_φ(c=0)); 1 uses the camera branch only (default).</summary>
    public double ParticleGuidanceScale { get; init; } = 1.0;

    /// <summary>Learning rate of ε_φ's AdamW (1e-4).</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>AdamW β₁, β₂ (threestudio prolificdreamer.yaml: 0.9, 0.99).</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.99);

    /// <summary>AdamW ε (1e-15, the threestudio config).</summary>
    public double AdamEpsilon { get; init; } = 1e-15;

    /// <summary>AdamW weight decay (torch default 0.01).</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Probability of zeroing the camera for the whole training batch (lora_cfg_training, 0.1).</summary>
    public double CameraDropout { get; init; } = 0.1;

    /// <summary>Run ε_φ's training step inside every <see cref="IScoreDistiller.Distill"/> call (once per 3D step, as the reference).</summary>
    public bool TrainParticleEveryStep { get; init; } = true;

    /// <summary>ProlificDreamer's config: max t 0.98 → 0.5 at step 5000.</summary>
    public static VsdOptions ProlificDreamer => new() { Guidance = new() { MaxStepPercent = ScalarSchedule.Linear(5000, 0.98, 0.5, 5001) } };
}

/// <summary>
/// Asynchronous Score Distillation (ScaleDreamer): g = w(t)·(ε̂_cfg(x_t; t) − ε_c(x_{t+Δt}; t + Δt)) with one shared ε,
/// Δt = ⌊U·η·(t − t_min)⌋ clamped so t + Δt ≤ T − 1.
/// </summary>
public sealed record AsdOptions
{
    /// <summary>Shared options: CFG 7.5 (standard form) at t only, w = 1 − ᾱ_t, window 500–980 → 20–500 over the run.</summary>
    public GuidanceOptions Guidance { get; init; } = new()
    {
        GuidanceScale = 7.5,
        MinStepPercent = ScalarSchedule.OverRun(0.5, 0.02),
        MaxStepPercent = ScalarSchedule.OverRun(0.98, 0.5),
    };

    /// <summary>η, plus_ratio (0.1).</summary>
    public double ShiftRatio { get; init; } = 0.1;

    /// <summary>plus_random: Δt = ⌊U(0,1)·η(t − t_min)⌋ (true, every shipped config); false gives Δt = ⌊η(t − t_min)⌋.</summary>
    public bool RandomShift { get; init; } = true;

    /// <summary>The reference class defaults with the shipped configs' schedules (no view-dependent Perp-Neg).</summary>
    public static AsdOptions Default => new();

    /// <summary>ScaleDreamer's SD 2.1 configs: view-dependent prompting at 30°/30° with Perp-Neg (−0.5).</summary>
    public static AsdOptions ScaleDreamerStableDiffusion => new()
    {
        Guidance = Default.Guidance with { ViewDependent = ViewDependentOptions.ScaleDreamer },
    };

    /// <summary>ScaleDreamer's MVDream config: no view-dependent prompting, one t per sample shared by its views.</summary>
    public static AsdOptions ScaleDreamerMVDream => new() { Guidance = Default.Guidance with { ViewDependent = null } };
}

/// <summary>
/// Interval Score Matching (LucidDreamer, CVPR 2024): DDIM-invert the clean latent to s = t − δ_T with δ_S jumps (unconditional),
/// one more step to t, and g = λ·w(t)·(ε̂_cfg(x_t; t) − ε̂_∅(x_s; s)), w = √((1 − ᾱ_t)/ᾱ_t).
/// </summary>
public sealed record IsmOptions
{
    /// <summary>Shared options: CFG 7.5, w = σ/α, one t per batch, t ∈ [20, 980 → 500 over warm-up 1500 steps], no view suffixes.</summary>
    public GuidanceOptions Guidance { get; init; } = new()
    {
        GuidanceScale = 7.5,
        Weighting = TimestepWeighting.SigmaOverAlpha,
        MinStepPercent = 0.02,
        MaxStepPercent = ScalarSchedule.Linear(0, 0.98, 0.5, 1500),
        SharedTimestep = true,
        ViewDependent = null,
    };

    /// <summary>δ_T, the interval between x_s and x_t (delta_t 25, annealed from delta_t_start 100 over 1500 steps).</summary>
    public ScalarSchedule IntervalSteps { get; init; } = ScalarSchedule.Linear(0, 100, 25, 1500);

    /// <summary>δ_S, the inversion jump (xs_delta_t 200).</summary>
    public int InversionStride { get; init; } = 200;

    /// <summary>Maximum inversion steps to reach s (xs_inv_steps 5).</summary>
    public int InversionSteps { get; init; } = 5;

    /// <summary>DDIM η of the inversion (xs_eta 0).</summary>
    public double InversionEta { get; init; } = 0.0;

    /// <summary>denoise_guidance_scale: CFG of the inversion predictions (1 = unconditional only).</summary>
    public double InversionGuidanceScale { get; init; } = 1.0;

    /// <summary>inverse_text: the prompt the inversion is conditioned on ("").</summary>
    public string InversionPrompt { get; init; } = "";

    /// <summary>λ, lambda_guidance (0.1 in the shipped configs).</summary>
    public double GradientScale { get; init; } = 0.1;

    /// <summary>LucidDreamer adds 0.1·N(0, I) per channel (shared over pixels and batch) to the drawn ε; 0 disables.</summary>
    public double NoiseOffset { get; init; } = 0.1;

    /// <summary>LucidDreamer's shipped configs.</summary>
    public static IsmOptions LucidDreamer => new();
}
