using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>
/// Interval Score Matching (LucidDreamer): x_{s₀} = q(z, ε, s₀) with s₀ = max(s − δ_S·n, 0), DDIM inversion with the inversion
/// prompt in δ_S jumps up to s = max(t − δ_T, 0), one more inversion step s → t, and
/// g = λ·w(t)·(ε̂_cfg(x_t; t, y) − ε̂_∅(x_s; s)). Needs one prior call per inversion step plus the final CFG call.
/// </summary>
public sealed class IsmDistiller : ScoreDistillerBase
{
    /// <summary>Creates ISM against any prior.</summary>
    public IsmDistiller(IDiffusionPrior prior, IsmOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new IsmOptions()).Guidance, generator)
    {
        Options = options ?? new IsmOptions();
        if (Options.InversionStride < 1) throw new ArgumentOutOfRangeException(nameof(options), Options.InversionStride, "δ_S must be ≥ 1.");
        if (Options.InversionSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), Options.InversionSteps, "The inversion needs ≥ 1 step.");
    }

    /// <summary>The options.</summary>
    public IsmOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "ISM";

    /// <summary>The interval s for timesteps <paramref name="t"/>: max(t − δ_T, 0).</summary>
    public static Tensor IntervalStart(Tensor t, int intervalSteps) => (t - intervalSteps).clamp_min(0);

    /// <summary>
    /// DDIM move of x at <paramref name="from"/> with noise prediction ε to <paramref name="to"/> (either direction):
    /// x' = √ᾱ_to·x̂₀ + √(1 − ᾱ_to − σ²)·ε + σ·n, x̂₀ = (x − √(1 − ᾱ_from)·ε)/√ᾱ_from, σ = η·√((1 − ᾱ_to)/(1 − ᾱ_from))·√|1 − ᾱ_from/ᾱ_to|.
    /// </summary>
    public static Tensor DdimMove(NoiseSchedule schedule, Tensor x, Tensor eps, Tensor from, Tensor to, double eta = 0, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        int r = (int)x.dim();
        var a0 = schedule.AlphaBarAt(from, r, x.dtype);
        var a1 = schedule.AlphaBarAt(to, r, x.dtype);
        var x0 = (x - (1 - a0).sqrt() * eps) / a0.sqrt();
        if (eta == 0 || noise is null) return (a1.sqrt() * x0 + (1 - a1).sqrt() * eps).MoveToOuterDisposeScope();
        var sigma = eta * ((1 - a1) / (1 - a0)).sqrt() * (1 - a0 / a1).abs().sqrt();
        var dir = (1 - a1 - sigma.pow(2)).clamp_min(0).sqrt() * eps;
        return (a1.sqrt() * x0 + dir + sigma * noise).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var sched = Prior.Schedule;
        var t = step.Timesteps;
        int deltaT = (int)At(Options.IntervalSteps, step.Progress);
        int stride = Options.InversionStride;
        var s = IntervalStart(t, deltaT);
        var s0 = (s - (long)stride * Options.InversionSteps).clamp_min(0);
        var noise = step.Noise;
        if (step.Overrides?.Noise is null && Options.NoiseOffset != 0)
        {
            var shape = new long[] { 1, noise.shape[1], 1, 1 };
            var offset = randn(shape, noise.dtype, Generator.device, generator: Generator).to(noise.device);
            noise = noise + Options.NoiseOffset * offset;
        }
        var inv = InversionText(step);
        // Step 1: x_{s0} by the forward process, then DDIM inversion in δ_S jumps up to s (at least one prediction, as the reference).
        var x = sched.AddNoise(step.Latents, noise, s0);
        var cur = s0;
        using (var sc = s.cpu()) using (var s0c = s0.cpu())
        {
            long maxGap = sc.data<long>().Zip(s0c.data<long>().ToArray(), (a, b) => a - b).Max();
            long jumps = Math.Max(1, (maxGap + stride - 1) / stride);
            for (long i = 0; i < jumps; i++)
            {
                var e = InversionEpsilon(step, x, cur, inv);
                var next = minimum(cur + stride, s);
                x = DdimMove(sched, x, e, cur, next, Options.InversionEta, Options.InversionEta == 0 ? null : SampleNoise(x));
                cur = next;
            }
        }
        // Step 2: ε̂_∅(x_s; s) is the target; one more step to t.
        var target = InversionEpsilon(step, x, s, inv);
        var xt = DdimMove(sched, x, target, s, t);
        var tx = step.Text;
        double g = At(Guidance.GuidanceScale, step.Progress);
        Tensor eps;
        if (tx.UsesPerpNeg)
        {
            var p = Predict(step, (xt, t, tx.Cond), (xt, t, tx.Uncond), (xt, t, tx.PerpNegatives![0]), (xt, t, tx.PerpNegatives[1]));
            eps = GuidanceMath.PerpNegCfg(p[0], p[1], new[] { p[2], p[3] }, tx.PerpWeights!, g);
        }
        else
        {
            var p = Predict(step, (xt, t, tx.Cond), (xt, t, tx.Uncond));
            eps = GuidanceMath.Cfg(p[0], p[1], g, Guidance.CfgForm);
        }
        var w = WeightAt(t, xt);
        return new DistillationGradient(Options.GradientScale * w * (eps - target), MeanSquare(eps, target), t - s);
    }

    Tensor InversionText(DistillationStep step)
    {
        var enc = Prior.EncodeText(new[] { Options.InversionPrompt });
        try
        {
            return enc.Tokens.detach().expand(step.BatchSize, -1, -1).contiguous();
        }
        finally { enc.Dispose(); }
    }

    Tensor InversionEpsilon(DistillationStep step, Tensor x, Tensor timesteps, Tensor invText)
    {
        if (Options.InversionGuidanceScale <= 1.0) return Predict(step, (x, timesteps, invText))[0];
        var p = Predict(step, (x, timesteps, step.Text.Cond), (x, timesteps, invText));
        return p[1] + Options.InversionGuidanceScale * (p[0] - p[1]);
    }
}
