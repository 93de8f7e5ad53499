using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Priors;

/// <summary>
/// The discrete DDPM forward process q(x_t | x_0) of a diffusion prior: the table ᾱ_t for t = 0..T−1 and the
/// closed-form conversions between x_0, ε, v and x_t. Immutable; the table lives on the CPU in float64 and is
/// moved to the query's device and dtype on use.
/// </summary>
public sealed class NoiseSchedule
{
    readonly double[] _alphasCumprod;
    readonly Dictionary<(DeviceType, int, ScalarType), Tensor> _tables = new();
    readonly object _gate = new();

    /// <summary>Creates a schedule from an explicit ᾱ table.</summary>
    /// <param name="alphasCumprod">ᾱ_t for t = 0..T−1, strictly decreasing in (0, 1].</param>
    public NoiseSchedule(IReadOnlyList<double> alphasCumprod)
    {
        ArgumentNullException.ThrowIfNull(alphasCumprod);
        if (alphasCumprod.Count < 2) throw new ArgumentException("A noise schedule needs at least two timesteps.", nameof(alphasCumprod));
        for (int i = 0; i < alphasCumprod.Count; i++)
        {
            double a = alphasCumprod[i];
            if (!(a > 0 && a <= 1)) throw new ArgumentException($"ᾱ[{i}] = {a} is outside (0, 1].", nameof(alphasCumprod));
        }
        _alphasCumprod = alphasCumprod.ToArray();
    }

    /// <summary>Number of training timesteps T.</summary>
    public int NumTimesteps => _alphasCumprod.Length;

    /// <summary>ᾱ_t for t = 0..T−1.</summary>
    public IReadOnlyList<double> AlphasCumprod => _alphasCumprod;

    /// <summary>ᾱ_t for one timestep.</summary>
    public double AlphaBar(int t)
    {
        if ((uint)t >= (uint)_alphasCumprod.Length)
            throw new ArgumentOutOfRangeException(nameof(t), t, $"Timestep must be in [0, {_alphasCumprod.Length - 1}].");
        return _alphasCumprod[t];
    }

    /// <summary>
    /// Stable Diffusion's "scaled_linear" schedule (also MVDream's "linear" in LDM code):
    /// β_i = (√β_start + (√β_end − √β_start)·i/(T−1))², ᾱ_t = Π_{i≤t}(1 − β_i). Computed in float32 as diffusers does.
    /// </summary>
    public static NoiseSchedule ScaledLinear(int numTimesteps = 1000, double betaStart = 0.00085, double betaEnd = 0.012)
    {
        if (numTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(numTimesteps));
        var abar = new double[numTimesteps];
        float cum = 1f;
        float s0 = MathF.Sqrt((float)betaStart), s1 = MathF.Sqrt((float)betaEnd);
        for (int i = 0; i < numTimesteps; i++)
        {
            float s = s0 + (s1 - s0) * i / (numTimesteps - 1);
            cum *= 1f - s * s;
            abar[i] = cum;
        }
        return new NoiseSchedule(abar);
    }

    /// <summary>Plain "linear" betas: β_i = β_start + (β_end − β_start)·i/(T−1).</summary>
    public static NoiseSchedule Linear(int numTimesteps = 1000, double betaStart = 0.0001, double betaEnd = 0.02)
    {
        if (numTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(numTimesteps));
        var abar = new double[numTimesteps];
        float cum = 1f;
        for (int i = 0; i < numTimesteps; i++)
        {
            float beta = (float)(betaStart + (betaEnd - betaStart) * i / (numTimesteps - 1));
            cum *= 1f - beta;
            abar[i] = cum;
        }
        return new NoiseSchedule(abar);
    }

    /// <summary>ᾱ gathered at <paramref name="timesteps"/> [N] (int64) and shaped [N, 1, …, 1] to broadcast against a tensor of rank <paramref name="rank"/>.</summary>
    public Tensor AlphaBarAt(Tensor timesteps, int rank, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(timesteps);
        if (timesteps.dim() != 1) throw new ArgumentException($"Timesteps must be 1-D [N], got shape [{string.Join(", ", timesteps.shape)}].", nameof(timesteps));
        var table = Table(timesteps.device, dtype);
        var shape = new long[Math.Max(rank, 1)];
        Array.Fill(shape, 1L);
        shape[0] = timesteps.shape[0];
        using var idx = timesteps.to(ScalarType.Int64);
        return table.index_select(0, idx).reshape(shape);
    }

    /// <summary>x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε.</summary>
    public Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var a = AlphaBarAt(timesteps, (int)x0.dim(), x0.dtype);
        return (a.sqrt() * x0 + (1 - a).sqrt() * noise).MoveToOuterDisposeScope();
    }

    /// <summary>v = √ᾱ_t·ε − √(1 − ᾱ_t)·x_0 (the v-prediction target).</summary>
    public Tensor Velocity(Tensor x0, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var a = AlphaBarAt(timesteps, (int)x0.dim(), x0.dtype);
        return (a.sqrt() * noise - (1 - a).sqrt() * x0).MoveToOuterDisposeScope();
    }

    /// <summary>ε = √ᾱ_t·v + √(1 − ᾱ_t)·x_t (v → ε for v-prediction models).</summary>
    public Tensor EpsilonFromVelocity(Tensor noisy, Tensor velocity, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var a = AlphaBarAt(timesteps, (int)noisy.dim(), noisy.dtype);
        return (a.sqrt() * velocity + (1 - a).sqrt() * noisy).MoveToOuterDisposeScope();
    }

    /// <summary>x_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t.</summary>
    public Tensor PredictOriginal(Tensor noisy, Tensor epsilon, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var a = AlphaBarAt(timesteps, (int)noisy.dim(), noisy.dtype);
        return ((noisy - (1 - a).sqrt() * epsilon) / a.sqrt()).MoveToOuterDisposeScope();
    }

    Tensor Table(Device device, ScalarType dtype)
    {
        var key = (device.type, device.index, dtype);
        lock (_gate)
        {
            if (!_tables.TryGetValue(key, out var t))
            {
                using var cpu = tensor(_alphasCumprod, ScalarType.Float64);
                t = cpu.to(dtype, device).DetachFromDisposeScope();
                _tables[key] = t;
            }
            return t;
        }
    }
}
