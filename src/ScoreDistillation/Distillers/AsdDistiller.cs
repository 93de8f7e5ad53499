using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>
/// Asynchronous Score Distillation (ScaleDreamer): g = w(t)·(ε̂_cfg(x_t; t) − ε_c(x_{t+Δt}; t + Δt)) with x_t and x_{t+Δt}
/// built from one shared ε, one prior call on [x_t; x_t; x_{t+Δt}] with [cond; uncond; cond] (Perp-Neg adds the two
/// negatives at t). Δt = ⌊U·η·(t − t_min)⌋ (or ⌊η·(t − t_min)⌋), clamped so t + Δt ≤ T − 1, with t_min the annealed bound.
/// </summary>
public sealed class AsdDistiller : ScoreDistillerBase
{
    /// <summary>Creates ASD against any prior.</summary>
    public AsdDistiller(IDiffusionPrior prior, AsdOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new AsdOptions()).Guidance, generator)
    {
        Options = options ?? new AsdOptions();
        if (Options.ShiftRatio < 0) throw new ArgumentOutOfRangeException(nameof(options), Options.ShiftRatio, "η (ShiftRatio) must be ≥ 0.");
    }

    /// <summary>The options.</summary>
    public AsdOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "ASD";

    /// <summary>Δt for timesteps <paramref name="t"/> (reference <c>get_t_plus</c>); <paramref name="uniform"/> is U(0,1) per row or null.</summary>
    public static Tensor TimestepShift(Tensor t, int minStep, double eta, Tensor? uniform, int numTimesteps)
    {
        ArgumentNullException.ThrowIfNull(t);
        using var scope = NewDisposeScope();
        var d = (eta * (t.to(ScalarType.Float64) - minStep)).clamp_min(0);
        d = minimum(d, (numTimesteps - 1 - t).to(ScalarType.Float64));
        if (uniform is not null) d = d * uniform.to(ScalarType.Float64);
        var tPlus = (t + d.to(ScalarType.Int64)).clamp(1, numTimesteps - 1);
        return (tPlus - t).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var t = step.Timesteps;
        int T = Prior.Schedule.NumTimesteps;
        int b = step.BatchSize;
        Tensor dt;
        if (step.Overrides?.TimestepShift is { } od)
        {
            if (od.dim() != 1 || od.shape[0] != b) throw new ArgumentException($"Δt override must be [{b}], got [{string.Join(", ", od.shape)}].");
            dt = od.to(ScalarType.Int64, t.device);
            using var bad = dt.lt(0).logical_or((t + dt).gt(T - 1)).any();
            if (bad.item<bool>()) throw new ArgumentOutOfRangeException(nameof(step), $"Δt override must be ≥ 0 with t + Δt ≤ {T - 1}.");
        }
        else
        {
            Tensor? u = null;
            if (Options.RandomShift)
            {
                int n = Guidance.SharedTimestep ? 1 : b / Prior.ViewsPerSample;
                u = PerSample(SampleUniform(n, t.device, ScalarType.Float64), b);
            }
            dt = TimestepShift(t, step.MinStep, Options.ShiftRatio, u, T);
        }
        var tp = t + dt;
        var xt = Prior.Schedule.AddNoise(step.Latents, step.Noise, t);
        var xp = Prior.Schedule.AddNoise(step.Latents, step.Noise, tp);
        double s = At(Guidance.GuidanceScale, step.Progress);
        // [x_t; x_t (; Perp-Neg negatives); x_{t+Δt}] in one prior call: CFG at t, conditional only at t + Δt.
        var (e1, rest) = GuidedPrediction(step, xt, t, s, (xp, tp, step.Text.Cond));
        var e2 = rest[0];
        var w = WeightAt(t, xt);
        return new DistillationGradient(w * (e1 - e2), MeanSquare(e1, e2), dt);
    }
}
