using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Distillers;

/// <summary>Builds inputs and computes expected values in float64, independently of the library's code paths.</summary>
static class DistillerTestKit
{
    public static CameraBatch Cameras(double[] azimuths, double[]? elevations = null)
    {
        int b = azimuths.Length;
        elevations ??= new double[b];
        var c2w = eye(4).unsqueeze(0).repeat(b, 1, 1);
        for (int i = 0; i < b; i++)
        {
            double a = azimuths[i] * Math.PI / 180, e = elevations[i] * Math.PI / 180;
            c2w[i, 0, 3] = (float)(2 * Math.Cos(e) * Math.Cos(a));
            c2w[i, 1, 3] = (float)(2 * Math.Cos(e) * Math.Sin(a));
            c2w[i, 2, 3] = (float)(2 * Math.Sin(e));
        }
        return new CameraBatch(c2w, full(b, 50f), tensor(elevations.Select(v => (float)v).ToArray()), tensor(azimuths.Select(v => (float)v).ToArray()), full(b, 2f));
    }

    public static DistillationInput Input(Tensor images, string prompt, CameraBatch cams, TrainingProgress? progress = null,
        DistillationOverrides? overrides = null, IReadOnlyList<string>? negatives = null)
        => new(images, Enumerable.Repeat(prompt, (int)images.shape[0]).ToArray(), cams, progress ?? new TrainingProgress(0, 100), negatives, overrides);

    /// <summary>Exact ε*(x_t; t, μ, σ) in float64.</summary>
    public static Tensor Eps(NoiseSchedule schedule, Tensor xt, long[] t, double[][] mu, double[] sigma)
    {
        var x = xt.detach().to(ScalarType.Float64);
        var rows = new List<Tensor>();
        for (int i = 0; i < t.Length; i++)
        {
            double a = schedule.AlphaBar((int)t[i]);
            var m = tensor(mu[i]).reshape(x[i].shape);
            double v = a * sigma[i] * sigma[i] + 1 - a;
            rows.Add(Math.Sqrt(1 - a) * (x[i] - Math.Sqrt(a) * m) / v);
        }
        return stack(rows.ToArray());
    }

    public static Tensor Eps(GaussianPrior prior, Tensor xt, long[] t, string prompt)
    {
        var (mu, s) = prior.Parameters(prompt);
        return Eps(prior.Schedule, xt, t, Enumerable.Repeat(mu, t.Length).ToArray(), Enumerable.Repeat(s, t.Length).ToArray());
    }

    public static Tensor AddNoise(NoiseSchedule schedule, Tensor x0, Tensor eps, long[] t)
    {
        var rows = new List<Tensor>();
        for (int i = 0; i < t.Length; i++)
        {
            double a = schedule.AlphaBar((int)t[i]);
            rows.Add(Math.Sqrt(a) * x0[i].to(ScalarType.Float64) + Math.Sqrt(1 - a) * eps[i].to(ScalarType.Float64));
        }
        return stack(rows.ToArray());
    }

    public static Tensor Weight(NoiseSchedule schedule, long[] t, TimestepWeighting w)
    {
        var v = t.Select(ti =>
        {
            double a = schedule.AlphaBar((int)ti);
            return w switch
            {
                TimestepWeighting.OneMinusAlphaBar => 1 - a,
                TimestepWeighting.Uniform => 1.0,
                TimestepWeighting.SqrtAlphaBarTimesOneMinusAlphaBar => Math.Sqrt(a) * (1 - a),
                _ => Math.Sqrt((1 - a) / a),
            };
        }).ToArray();
        return tensor(v).reshape(t.Length, 1, 1, 1);
    }

    public static Tensor Perp(Tensor x, Tensor y)
    {
        var xy = (x * y).sum(new long[] { 1, 2, 3 }, keepdim: true);
        var yy = (y * y).sum(new long[] { 1, 2, 3 }, keepdim: true).clamp_min(1e-6);
        return x - xy / yy * y;
    }

    public static Tensor Images(int b, int size, long seed, double lo = 0.2, double hi = 0.8)
    {
        var g = new Generator((ulong)seed);
        return (lo + (hi - lo) * rand(new long[] { b, 3, size, size }, generator: g)).requires_grad_(true);
    }

    public static Tensor Noise(int b, int size, long seed) => randn(new long[] { b, 3, size, size }, generator: new Generator((ulong)seed));
}
