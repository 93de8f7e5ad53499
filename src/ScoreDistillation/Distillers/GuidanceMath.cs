using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>The building blocks every distiller combines, exposed so formulas can be checked one by one.</summary>
public static class GuidanceMath
{
    /// <summary>Classifier-free guidance in the chosen form (see <see cref="CfgForm"/>).</summary>
    public static Tensor Cfg(Tensor cond, Tensor uncond, double scale, CfgForm form) => form switch
    {
        CfgForm.Standard => uncond + scale * (cond - uncond),
        CfgForm.ThreestudioSds => cond + scale * (cond - uncond),
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, "Unknown CFG form."),
    };

    /// <summary>perp(x, y) = x − ⟨x, y⟩/max(⟨y, y⟩, 1e-6)·y with the dot products taken per sample over all but the first dimension.</summary>
    public static Tensor Perpendicular(Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        var dims = Enumerable.Range(1, (int)x.dim() - 1).Select(i => (long)i).ToArray();
        var xy = (x * y).sum(dims, keepdim: true);
        var yy = (y * y).sum(dims, keepdim: true).clamp_min(1e-6);
        return (x - xy / yy * y).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Perp-Neg guidance: ε_u + s·(e_pos + Σ_i w_i·perp(e_i, e_pos)) with e_pos = ε_pos − ε_u, e_i = ε_neg_i − ε_u and
    /// <paramref name="weights"/> [B, K] (already scaled).
    /// </summary>
    public static Tensor PerpNegCfg(Tensor pos, Tensor uncond, IReadOnlyList<Tensor> negatives, Tensor weights, double scale)
    {
        using var scope = NewDisposeScope();
        var ePos = pos - uncond;
        return (uncond + scale * (ePos + PerpNegSum(ePos, uncond, negatives, weights))).MoveToOuterDisposeScope();
    }

    /// <summary>Σ_i w_i·perp(ε_neg_i − ε_u, e_pos) with <paramref name="weights"/> [B, K].</summary>
    public static Tensor PerpNegSum(Tensor ePos, Tensor uncond, IReadOnlyList<Tensor> negatives, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(negatives);
        using var scope = NewDisposeScope();
        var shape = new long[ePos.dim()];
        Array.Fill(shape, 1L);
        shape[0] = ePos.shape[0];
        var acc = zeros_like(ePos);
        for (int i = 0; i < negatives.Count; i++)
        {
            var w = weights[TensorIndex.Colon, i].to(ePos.dtype).reshape(shape);
            acc = acc + w * Perpendicular(negatives[i] - uncond, ePos);
        }
        return acc.MoveToOuterDisposeScope();
    }

    /// <summary>w(t) gathered at <paramref name="timesteps"/> [N] and shaped [N, 1, …] for a tensor of rank <paramref name="rank"/>.</summary>
    public static Tensor Weight(NoiseSchedule schedule, Tensor timesteps, TimestepWeighting weighting, int rank, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        using var scope = NewDisposeScope();
        var a = schedule.AlphaBarAt(timesteps, rank, dtype);
        var w = weighting switch
        {
            TimestepWeighting.OneMinusAlphaBar => 1 - a,
            TimestepWeighting.Uniform => ones_like(a),
            TimestepWeighting.SqrtAlphaBarTimesOneMinusAlphaBar => a.sqrt() * (1 - a),
            TimestepWeighting.SigmaOverAlpha => ((1 - a) / a).sqrt(),
            _ => throw new ArgumentOutOfRangeException(nameof(weighting), weighting, "Unknown weighting."),
        };
        return w.MoveToOuterDisposeScope();
    }

    /// <summary>The reference t window at <paramref name="progress"/>: (int(T·p_min), int(T·p_max)), both inclusive.</summary>
    public static (int Min, int Max) TimestepWindow(GuidanceOptions options, int numTimesteps, TrainingProgress progress)
    {
        ArgumentNullException.ThrowIfNull(options);
        int lo = (int)(numTimesteps * options.MinStepPercent.ValueAt(progress));
        int hi = (int)(numTimesteps * options.MaxStepPercent.ValueAt(progress));
        lo = Math.Clamp(lo, 0, numTimesteps - 1);
        hi = Math.Clamp(hi, 0, numTimesteps - 1);
        if (hi < lo) throw new InvalidOperationException($"The t window is empty at step {progress.Step}: t_min {lo} > t_max {hi}.");
        return (lo, hi);
    }

    /// <summary>The target-trick loss 0.5·‖z − sg(z − g)‖²/B, whose gradient with respect to z is g/B.</summary>
    public static Tensor TargetTrickLoss(Tensor latents, Tensor gradient)
    {
        using var scope = NewDisposeScope();
        var target = (latents - gradient).detach();
        return (0.5 * (latents - target).pow(2).sum() / latents.shape[0]).MoveToOuterDisposeScope();
    }

    /// <summary>Shifted exponential decay f(a, b, c; r) = a·e^(−b·r) + c used by the Perp-Neg weights.</summary>
    public static double ShiftedExponentialDecay((double A, double B, double C) f, double r) => f.A * Math.Exp(-f.B * r) + f.C;
}
