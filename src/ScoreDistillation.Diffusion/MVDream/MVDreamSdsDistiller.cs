using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>Options of <see cref="MVDreamSdsDistiller"/> with MVDream-threestudio's defaults (configs/mvdream-sd21.yaml).</summary>
public sealed record MVDreamSdsOptions
{
    /// <summary>CFG 50; t window from [0.98, 0.98] annealed to [0.02, 0.50] over 8000 steps; no view-dependent prompts; no clipping or NaN handling (as the reference).</summary>
    public GuidanceOptions Guidance { get; init; } = new()
    {
        GuidanceScale = 50,
        MinStepPercent = ScalarSchedule.Linear(0, 0.98, 0.02, 8000),
        MaxStepPercent = ScalarSchedule.Linear(0, 0.98, 0.50, 8000),
        ViewDependent = null,
        NanToNum = false,
        SharedTimestep = true,
        NegativePrompt = "",
    };

    /// <summary>The x0-reconstruction loss of MVDream §3.2: 0.5·‖z − sg(x̂₀)‖²/B instead of w(t)·(ε̂ − ε).</summary>
    public bool ReconstructionLoss { get; init; } = true;

    /// <summary>Mix between the CFG x̂₀ and its per-sample std-rescaled version (0.5 in the released code, 0.7 in the paper).</summary>
    public double StdRescale { get; init; } = 0.5;
}

/// <summary>
/// MVDream's multi-view SDS: one t for the whole batch, CFG over [cond; uncond] with the same cameras, and by default the
/// x0-reconstruction form g = z − x̂₀ with x̂₀ rescaled per sample (its 4 views) toward the std of the unguided x̂₀.
/// Without the reconstruction loss it is classic SDS with w = 1 − ᾱ_t.
/// </summary>
public sealed class MVDreamSdsDistiller : ScoreDistillerBase
{
    /// <summary>Creates the distiller against a multi-view prior (any <see cref="IDiffusionPrior"/>; views from <see cref="IDiffusionPrior.ViewsPerSample"/>).</summary>
    public MVDreamSdsDistiller(IDiffusionPrior prior, MVDreamSdsOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new MVDreamSdsOptions()).Guidance, generator) => Options = options ?? new MVDreamSdsOptions();

    /// <summary>The options.</summary>
    public MVDreamSdsOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "SDS-MVDream";

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var t = step.Timesteps;
        var z = step.Latents;
        var xt = Prior.Schedule.AddNoise(z, step.Noise, t);
        var p = Predict(step, (xt, t, step.Text.Cond), (xt, t, step.Text.Uncond));
        double s = At(Guidance.GuidanceScale, step.Progress);
        var eps = p[1] + s * (p[0] - p[1]);
        if (!Options.ReconstructionLoss)
            return new DistillationGradient(WeightAt(t, xt) * (eps - step.Noise), MeanSquare(eps, step.Noise));

        var x0 = Prior.Schedule.PredictOriginal(xt, eps, t);
        if (Options.StdRescale > 0)
        {
            var x0Plain = Prior.Schedule.PredictOriginal(xt, p[0], t);
            long v = Prior.ViewsPerSample, b = z.shape[0];
            var shape = new long[] { b / v, -1 };
            // Per sample (its views together), as the reference's "(b f) c h w -> b (f c h w)" std.
            var f = (x0Plain.reshape(shape).std(1, keepdim: true) + 1e-8) / (x0.reshape(shape).std(1, keepdim: true) + 1e-8);
            var rescaled = (f * x0.reshape(shape)).reshape(x0.shape);
            x0 = Options.StdRescale * rescaled + (1 - Options.StdRescale) * x0;
        }
        return new DistillationGradient(z - x0, MeanSquare(eps, step.Noise));
    }
}
