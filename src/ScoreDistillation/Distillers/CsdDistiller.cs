using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>
/// Classifier Score Distillation: g = w(t)·(a·ε_c + b·ε_neg + c·ε_null + d·ε) + w(t)·p·Σ_i w_i·perp(ε_neg_i − ε_u, ε_c − ε_u),
/// one prior call on [x_t; x_t; x_t] with [cond; negative; ""] (+ the Perp-Neg negatives).
/// </summary>
public sealed class CsdDistiller : ScoreDistillerBase
{
    /// <summary>Creates CSD against any prior.</summary>
    public CsdDistiller(IDiffusionPrior prior, CsdOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new CsdOptions()).Guidance, generator) => Options = options ?? new CsdOptions();

    /// <summary>The options.</summary>
    public CsdOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "CSD";

    /// <inheritdoc />
    protected override bool NeedsNullText => true;

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var t = step.Timesteps;
        var xt = Prior.Schedule.AddNoise(step.Latents, step.Noise, t);
        var tx = step.Text;
        var pr = step.Progress;
        double a = At(Options.CondScale, pr), b = At(Options.UncondScale, pr), c = At(Options.NullScale, pr), d = At(Options.NoiseScale, pr);
        Tensor[] p = tx.UsesPerpNeg
            ? Predict(step, (xt, t, tx.Cond), (xt, t, tx.Uncond), (xt, t, tx.Null), (xt, t, tx.PerpNegatives![0]), (xt, t, tx.PerpNegatives[1]))
            : Predict(step, (xt, t, tx.Cond), (xt, t, tx.Uncond), (xt, t, tx.Null));
        var direction = a * p[0] + b * p[1] + c * p[2] + d * step.Noise;
        double ps = At(Options.PerpNegScale, pr);
        if (tx.UsesPerpNeg && ps != 0)
            direction = direction + ps * GuidanceMath.PerpNegSum(p[0] - p[1], p[1], new[] { p[3], p[4] }, tx.PerpWeights!);
        var w = WeightAt(t, xt);
        return new DistillationGradient(w * direction, direction.pow(2).mean());
    }

    /// <inheritdoc />
    protected override Tensor PostProcess(Tensor gradient, TrainingProgress progress)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        return Options.NormalizeGradient ? gradient / (gradient.pow(2).sum().sqrt() + 1e-8) : gradient;
    }
}
