using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>Score Distillation Sampling: g = w(t)·(ε̂_cfg(x_t; t, y) − ε), one prior call on [x_t; x_t] (+ Perp-Neg negatives).</summary>
public sealed class SdsDistiller : ScoreDistillerBase
{
    /// <summary>Creates SDS against any prior.</summary>
    public SdsDistiller(IDiffusionPrior prior, SdsOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new SdsOptions()).Guidance, generator) => Options = options ?? new SdsOptions();

    /// <summary>The options.</summary>
    public SdsOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "SDS";

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var t = step.Timesteps;
        var xt = Prior.Schedule.AddNoise(step.Latents, step.Noise, t);
        double s = At(Guidance.GuidanceScale, step.Progress);
        var eps = GuidedPrediction(step, xt, t, s).Guided;
        var w = WeightAt(t, xt);
        return new DistillationGradient(w * (eps - step.Noise), MeanSquare(eps, step.Noise));
    }
}
