using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// Dense per-ray interval sampling and compositing with nerfacc semantics. Every ray has the same number of intervals,
/// so all functions work on [..., K] tensors without packing.
/// </summary>
public static class RayMarching
{
    /// <summary>
    /// Inverse-CDF sampling (nerfacc <c>importance_sampling</c>): n samples at u = c₀ + (k + b)·(c_K − c₀)/n (b = 0.5, or one
    /// uniform per ray when <paramref name="jitter"/> [..., 1] is given), located by right-searchsorted and linear
    /// interpolation within the CDF bin (bin midpoint where the bin is flat); then turned into n + 1 interval edges:
    /// midpoints between samples, the outer edges half a gap outside, clamped to the first/last input edge.
    /// </summary>
    /// <param name="edges">Sorted interval edges [..., K+1].</param>
    /// <param name="cdf">Non-decreasing CDF at the edges [..., K+1].</param>
    /// <param name="count">Number of samples n (≥ 2).</param>
    /// <param name="jitter">Optional per-ray uniform offsets in [0, 1) [..., 1].</param>
    /// <returns>New interval edges [..., n+1].</returns>
    public static Tensor ImportanceSample(Tensor edges, Tensor cdf, int count, Tensor? jitter = null)
    {
        ArgumentNullException.ThrowIfNull(edges);
        ArgumentNullException.ThrowIfNull(cdf);
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "Importance sampling needs at least 2 samples per ray.");
        if (!edges.shape.SequenceEqual(cdf.shape))
            throw new ArgumentException($"Edges [{string.Join(", ", edges.shape)}] and CDF [{string.Join(", ", cdf.shape)}] must have the same shape.");
        long k1 = edges.shape[^1];
        if (k1 < 2) throw new ArgumentException($"Need at least 2 edges per ray, got {k1}.", nameof(edges));
        using var scope = NewDisposeScope();
        var lo = cdf.narrow(-1, 0, 1);
        var hi = cdf.narrow(-1, k1 - 1, 1);
        var steps = arange(count, dtype: cdf.dtype, device: cdf.device);
        var u = jitter is null ? lo + (steps + 0.5) * ((hi - lo) / count) : lo + (steps + jitter) * ((hi - lo) / count);
        var cdfC = cdf.contiguous();
        var p = searchsorted(cdfC, u.contiguous(), right: true);
        var p0 = (p - 1).clamp(0, k1 - 1);
        var p1 = p.clamp(0, k1 - 1);
        var ul = cdfC.gather(-1, p0);
        var uu = cdfC.gather(-1, p1);
        var tl = edges.gather(-1, p0);
        var tu = edges.gather(-1, p1);
        var du = uu - ul;
        var flat = du < 1e-10;
        var t = where(flat, (tl + tu) * 0.5, (u - ul) * (tu - tl) / where(flat, ones_like(du), du) + tl);

        var tmin = edges.narrow(-1, 0, 1);
        var tmax = edges.narrow(-1, k1 - 1, 1);
        var t0 = t.narrow(-1, 0, 1);
        var t1 = t.narrow(-1, 1, 1);
        var tn = t.narrow(-1, count - 1, 1);
        var tp = t.narrow(-1, count - 2, 1);
        var first = maximum(t0 - (t1 - t0) * 0.5, tmin);
        var mids = (t.narrow(-1, 1, count - 1) + t.narrow(-1, 0, count - 1)) * 0.5;
        var last = minimum(tn + (tn - tp) * 0.5, tmax);
        return cat(new[] { first, mids, last }, -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The proposal CDF at the edges (nerfacc <c>ImportanceEstimator</c>): 1 − [T_0 … T_{K−1}, 0] with
    /// T_i = exp(−Σ_{j&lt;i} σ_j Δt_j) for densities σ [..., K] on intervals with edges [..., K+1].
    /// </summary>
    public static Tensor CdfFromDensity(Tensor edges, Tensor sigma)
    {
        ArgumentNullException.ThrowIfNull(edges);
        ArgumentNullException.ThrowIfNull(sigma);
        using var scope = NewDisposeScope();
        long k = sigma.shape[^1];
        var dt = edges.narrow(-1, 1, k) - edges.narrow(-1, 0, k);
        var sdt = sigma * dt;
        var excl = sdt.cumsum(-1) - sdt;
        var trans = (-excl).exp();
        return (1 - cat(new[] { trans, zeros_like(trans.narrow(-1, 0, 1)) }, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>Compositing weights w_i = α_i Π_{j&lt;i}(1 − α_j) (nerfacc <c>render_weight_from_alpha</c>) for α [..., S].</summary>
    public static Tensor WeightsFromAlpha(Tensor alpha)
    {
        ArgumentNullException.ThrowIfNull(alpha);
        using var scope = NewDisposeScope();
        var keep = 1 - alpha;
        var trans = cat(new[] { ones_like(alpha.narrow(-1, 0, 1)), keep.cumprod(-1).narrow(-1, 0, alpha.shape[^1] - 1) }, -1);
        return (trans * alpha).MoveToOuterDisposeScope();
    }

    /// <summary>VolSDF density inv_std·Ψ(−s): inv_std·(0.5 + 0.5·sign(s)·expm1(−|s|·inv_std)), inv_std clamped to [0, 80].</summary>
    public static Tensor VolSdfDensity(Tensor sdf, double invStd)
    {
        ArgumentNullException.ThrowIfNull(sdf);
        double a = Math.Clamp(invStd, 0.0, 80.0);
        using var scope = NewDisposeScope();
        return (a * (0.5 + 0.5 * sdf.sign() * (-sdf.abs() * a).expm1())).MoveToOuterDisposeScope();
    }
}
