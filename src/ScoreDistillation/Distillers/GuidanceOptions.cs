using ScoreDistillation.Priors;

namespace ScoreDistillation.Distillers;

/// <summary>How the conditional and unconditional predictions combine (classifier-free guidance).</summary>
public enum CfgForm
{
    /// <summary>ε̂ = ε_u + s·(ε_c − ε_u) (diffusers, ProlificDreamer, ScaleDreamer, CSD, ISM).</summary>
    Standard,

    /// <summary>ε̂ = ε_c + s·(ε_c − ε_u) (threestudio's SDS class; equals the standard form with s + 1).</summary>
    ThreestudioSds,
}

/// <summary>The timestep weighting w(t).</summary>
public enum TimestepWeighting
{
    /// <summary>w = 1 − ᾱ_t (threestudio "sds"; ScaleDreamer, ProlificDreamer, CSD with SD).</summary>
    OneMinusAlphaBar,

    /// <summary>w = 1 (threestudio "uniform").</summary>
    Uniform,

    /// <summary>w = √ᾱ_t·(1 − ᾱ_t) (threestudio "fantasia3d").</summary>
    SqrtAlphaBarTimesOneMinusAlphaBar,

    /// <summary>w = √((1 − ᾱ_t)/ᾱ_t) = σ_t/α_t (LucidDreamer's ISM).</summary>
    SigmaOverAlpha,
}

/// <summary>
/// Perp-Neg for view-dependent prompts (threestudio prompt processor, <c>scaledreamer.md</c> §3.7). The positive text is the
/// interpolation of the view prompts, two view prompts act as negatives with weights −f(r)·<see cref="WeightScale"/>, and
/// ε̂ = ε_u + s·(e_pos + Σ_i w_i·perp(e_i, e_pos)) with perp(x, y) = x − ⟨x, y⟩/max(⟨y, y⟩, 1e-6)·y.
/// f(a, b, c; r) = a·e^(−b·r) + c.
/// </summary>
public sealed record PerpNegOptions
{
    /// <summary>Multiplier on the prompt processor's weights −f(r): ScaleDreamer's −1·guidance_perp_neg = 0.5; threestudio SDS uses 1.</summary>
    public double WeightScale { get; init; } = 0.5;

    /// <summary>f_fs (front negative, front–side interpolation): (4, 0.5, −2.426).</summary>
    public (double A, double B, double C) FrontSide { get; init; } = (4, 0.5, -2.426);

    /// <summary>f_sf (side negative, front–side interpolation, evaluated at 1 − r): (4, 0.5, −2.426).</summary>
    public (double A, double B, double C) SideFront { get; init; } = (4, 0.5, -2.426);

    /// <summary>f_sb (side negative, side–back interpolation): (1, 0.5, −0.606).</summary>
    public (double A, double B, double C) SideBack { get; init; } = (1, 0.5, -0.606);

    /// <summary>f_fsb (front negative, side–back interpolation): (1, 0.5, 0.967).</summary>
    public (double A, double B, double C) FrontSideBack { get; init; } = (1, 0.5, 0.967);

    /// <summary>ScaleDreamer's SD configs (guidance_perp_neg = −0.5).</summary>
    public static PerpNegOptions ScaleDreamer => new();

    /// <summary>threestudio's SDS/CSD classes (weights used as the prompt processor gives them).</summary>
    public static PerpNegOptions Threestudio => new() { WeightScale = 1.0 };
}

/// <summary>
/// View-dependent prompting (threestudio): the prompt gets ", side view" by default, ", front view" if |shift(azimuth)| &lt;
/// <see cref="FrontThreshold"/>, ", back view" if |shift(azimuth)| &gt; 180 − <see cref="BackThreshold"/>, ", overhead view" if
/// elevation &gt; <see cref="OverheadThreshold"/> (later rules win); shift(a) = (a + 180) mod 360 − 180.
/// </summary>
public sealed record ViewDependentOptions
{
    /// <summary>Front half-angle in degrees (threestudio 45; ScaleDreamer and ProlificDreamer configs 30).</summary>
    public double FrontThreshold { get; init; } = 45;

    /// <summary>Back half-angle in degrees (threestudio 45; ScaleDreamer and ProlificDreamer configs 30).</summary>
    public double BackThreshold { get; init; } = 45;

    /// <summary>Elevation above which the view is "overhead" (60).</summary>
    public double OverheadThreshold { get; init; } = 60;

    /// <summary>Suffixes for side, front, back, overhead.</summary>
    public IReadOnlyList<string> Suffixes { get; init; } = new[] { ", side view", ", front view", ", back view", ", overhead view" };

    /// <summary>Perp-Neg; null disables it (plain suffixed prompts).</summary>
    public PerpNegOptions? PerpNeg { get; init; }

    /// <summary>threestudio's defaults (45°/45°/60°, no Perp-Neg).</summary>
    public static ViewDependentOptions Threestudio => new();

    /// <summary>ScaleDreamer's SD configs: 30°/30°/60° with Perp-Neg (guidance_perp_neg −0.5).</summary>
    public static ViewDependentOptions ScaleDreamer => new() { FrontThreshold = 30, BackThreshold = 30, PerpNeg = PerpNegOptions.ScaleDreamer };
}

/// <summary>Options shared by every distiller. Defaults are threestudio's guidance defaults; each distiller's options override them.</summary>
public sealed record GuidanceOptions
{
    /// <summary>Classifier-free guidance scale s (schedulable).</summary>
    public ScalarSchedule GuidanceScale { get; init; } = 7.5;

    /// <summary>CFG form.</summary>
    public CfgForm CfgForm { get; init; } = CfgForm.Standard;

    /// <summary>w(t).</summary>
    public TimestepWeighting Weighting { get; init; } = TimestepWeighting.OneMinusAlphaBar;

    /// <summary>Lower t bound as a fraction of T: t_min = int(T·p) (threestudio min_step_percent, default 0.02).</summary>
    public ScalarSchedule MinStepPercent { get; init; } = 0.02;

    /// <summary>Upper t bound as a fraction of T: t_max = int(T·p), inclusive (threestudio max_step_percent, default 0.98).</summary>
    public ScalarSchedule MaxStepPercent { get; init; } = 0.98;

    /// <summary>Elementwise clamp of g to [−c, c] after NaN→0; null = no clipping (the reference default).</summary>
    public ScalarSchedule? GradientClip { get; init; }

    /// <summary>Replace NaN by 0 and ±∞ by the largest finite value in g (torch.nan_to_num), before clipping.</summary>
    public bool NanToNum { get; init; } = true;

    /// <summary>Negative prompt used as the "unconditional" text when the input has none ("" = truly unconditional).</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>View-dependent prompting; null disables it (multi-view priors, amortized MVDream runs).</summary>
    public ViewDependentOptions? ViewDependent { get; init; } = ViewDependentOptions.Threestudio;

    /// <summary>One t for the whole batch (MVDream guidance, ISM) instead of one per sample.</summary>
    public bool SharedTimestep { get; init; }

    /// <summary>Seed for the distiller's own generator when none is injected.</summary>
    public long Seed { get; init; } = 0;
}
