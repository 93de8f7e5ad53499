using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Schedulers;

/// <summary>What one scheduler step returns (diffusers' <c>SchedulerOutput</c>).</summary>
/// <param name="PrevSample">x_{t−1} (or x at the previous inference timestep).</param>
/// <param name="PredOriginalSample">The model's estimate of x₀.</param>
public sealed record SchedulerStepOutput(Tensor PrevSample, Tensor PredOriginalSample);

/// <summary>
/// The parts DDPM and DDIM share, with diffusers semantics: β and ᾱ tables computed in float32 as diffusers does, wrapped in a
/// <see cref="NoiseSchedule"/>; <c>set_timesteps</c> with leading/trailing/linspace spacing; <c>add_noise</c> and <c>get_velocity</c>.
/// </summary>
public abstract class DiffusersScheduler
{
    readonly double[] _betas;

    /// <summary>Builds the tables from <paramref name="config"/>.</summary>
    protected DiffusersScheduler(SchedulerConfig config)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        if (config.Thresholding) throw new NotSupportedException("Dynamic thresholding (thresholding: true) is not supported.");
        if (config.NumTrainTimesteps < 2) throw new ArgumentException($"num_train_timesteps must be ≥ 2, got {config.NumTrainTimesteps}.", nameof(config));
        using var scope = NewDisposeScope();
        int n = config.NumTrainTimesteps;
        Tensor betas;
        if (config.TrainedBetas is { } tb)
        {
            if (tb.Count != n) throw new ArgumentException($"trained_betas has {tb.Count} values for {n} timesteps.", nameof(config));
            betas = tensor(tb.ToArray(), ScalarType.Float32);
        }
        else betas = config.BetaSchedule switch
        {
            "linear" => linspace(config.BetaStart, config.BetaEnd, n, ScalarType.Float32),
            "scaled_linear" => linspace(Math.Sqrt(config.BetaStart), Math.Sqrt(config.BetaEnd), n, ScalarType.Float32).pow(2),
            "squaredcos_cap_v2" => tensor(CosineBetas(n), ScalarType.Float32),
            _ => throw new ArgumentException($"Unknown beta_schedule '{config.BetaSchedule}' (expected linear, scaled_linear or squaredcos_cap_v2).", nameof(config)),
        };
        var alphasCumprod = (1 - betas).cumprod(0);
        if (config.RescaleBetasZeroSnr)
        {
            var s = alphasCumprod.sqrt();
            var s0 = s[0].clone();
            var sT = s[-1].clone();
            s = (s - sT) * s0 / (s0 - sT);
            var ab = s.pow(2);
            var alphas = cat(new[] { ab[..1], ab[1..] / ab[..^1] });
            betas = 1 - alphas;
            alphasCumprod = alphas.cumprod(0);
            // The last ᾱ is exactly 0 after the rescale; NoiseSchedule needs ᾱ > 0, so use 2⁻²⁴ as diffusers' Euler scheduler does.
            alphasCumprod[-1] = 5.9604644775390625e-08f;
        }
        _betas = betas.to(ScalarType.Float64).data<double>().ToArray();
        Schedule = new NoiseSchedule(alphasCumprod.to(ScalarType.Float64).data<double>().ToArray());
        Timesteps = Enumerable.Range(0, n).Reverse().Select(i => (long)i).ToArray();
    }

    /// <summary>The config.</summary>
    public SchedulerConfig Config { get; }

    /// <summary>ᾱ_t as a <see cref="NoiseSchedule"/> (float32 values held in float64).</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>β_t.</summary>
    public IReadOnlyList<double> Betas => _betas;

    /// <summary>ᾱ_t.</summary>
    public IReadOnlyList<double> AlphasCumprod => Schedule.AlphasCumprod;

    /// <summary>The inference timesteps (descending) after <see cref="SetTimesteps"/>; all training timesteps before.</summary>
    public long[] Timesteps { get; private set; }

    /// <summary>Number of inference steps, or null before <see cref="SetTimesteps"/>.</summary>
    public int? NumInferenceSteps { get; private set; }

    /// <summary>diffusers <c>set_timesteps</c>.</summary>
    public void SetTimesteps(int numInferenceSteps)
    {
        int n = Config.NumTrainTimesteps;
        if (numInferenceSteps < 1 || numInferenceSteps > n)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), numInferenceSteps, $"Inference steps must be in [1, {n}].");
        long[] ts;
        switch (Config.TimestepSpacing)
        {
            case "leading":
                {
                    int ratio = n / numInferenceSteps;
                    ts = Enumerable.Range(0, numInferenceSteps).Select(i => (long)i * ratio + Config.StepsOffset).Reverse().ToArray();
                    break;
                }
            case "trailing":
                {
                    double ratio = (double)n / numInferenceSteps;
                    var list = new List<long>();
                    for (double v = n; v > 0; v -= ratio) list.Add((long)Math.Round(v, MidpointRounding.ToEven) - 1);
                    ts = list.Take(numInferenceSteps).ToArray();
                    break;
                }
            case "linspace":
                ts = Enumerable.Range(0, numInferenceSteps)
                    .Select(i => (long)Math.Round(numInferenceSteps == 1 ? 0 : (double)(n - 1) * i / (numInferenceSteps - 1), MidpointRounding.ToEven))
                    .Reverse().ToArray();
                break;
            default:
                throw new ArgumentException($"Unknown timestep_spacing '{Config.TimestepSpacing}' (expected leading, trailing or linspace).");
        }
        Timesteps = ts;
        NumInferenceSteps = numInferenceSteps;
    }

    /// <summary>diffusers <c>add_noise</c>: √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with t [B].</summary>
    public Tensor AddNoise(Tensor originalSamples, Tensor noise, Tensor timesteps) => Schedule.AddNoise(originalSamples, noise, timesteps);

    /// <summary>diffusers <c>get_velocity</c>: √ᾱ_t·ε − √(1 − ᾱ_t)·x₀.</summary>
    public Tensor GetVelocity(Tensor sample, Tensor noise, Tensor timesteps) => Schedule.Velocity(sample, noise, timesteps);

    /// <summary>The timestep before <paramref name="timestep"/> in the inference sequence (t − T/n, or t − 1 without inference steps).</summary>
    public long PreviousTimestep(long timestep) => NumInferenceSteps is int k ? timestep - Config.NumTrainTimesteps / k : timestep - 1;

    /// <summary>ᾱ at <paramref name="t"/> as a float32 scalar tensor on <paramref name="like"/>'s device.</summary>
    protected Tensor AlphaBar(long t, Tensor like)
    {
        if (t < 0 || t >= Config.NumTrainTimesteps) throw new ArgumentOutOfRangeException(nameof(t), t, $"Timestep must be in [0, {Config.NumTrainTimesteps - 1}].");
        return tensor((float)Schedule.AlphaBar((int)t), ScalarType.Float32, like.device);
    }

    /// <summary>x̂₀ and ε̂ from the model output per <see cref="SchedulerConfig.PredictionType"/>.</summary>
    protected (Tensor X0, Tensor Eps) Convert(Tensor modelOutput, Tensor sample, Tensor alphaProdT)
    {
        var beta = 1 - alphaProdT;
        return Config.PredictionType switch
        {
            PredictionType.Epsilon => ((sample - beta.sqrt() * modelOutput) / alphaProdT.sqrt(), modelOutput),
            PredictionType.Sample => (modelOutput, (sample - alphaProdT.sqrt() * modelOutput) / beta.sqrt()),
            PredictionType.VPrediction => (alphaProdT.sqrt() * sample - beta.sqrt() * modelOutput, alphaProdT.sqrt() * modelOutput + beta.sqrt() * sample),
            _ => throw new InvalidOperationException($"Unknown prediction type {Config.PredictionType}."),
        };
    }

    /// <summary>Validates step inputs.</summary>
    protected static void CheckStep(Tensor modelOutput, Tensor sample)
    {
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentNullException.ThrowIfNull(sample);
        if (!modelOutput.shape.SequenceEqual(sample.shape))
            throw new ArgumentException($"Model output [{string.Join(", ", modelOutput.shape)}] and sample [{string.Join(", ", sample.shape)}] differ in shape.");
    }

    static double[] CosineBetas(int n)
    {
        static double AlphaBarFn(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var b = new double[n];
        for (int i = 0; i < n; i++) b[i] = Math.Min(1 - AlphaBarFn((i + 1.0) / n) / AlphaBarFn((double)i / n), 0.999);
        return b;
    }
}

/// <summary>diffusers <c>DDIMScheduler</c>: deterministic (η = 0) or stochastic DDIM steps for ε, v and x₀ models.</summary>
public sealed class DdimScheduler : DiffusersScheduler
{
    /// <summary>Creates the scheduler.</summary>
    public DdimScheduler(SchedulerConfig config) : base(config) { }

    /// <summary>ᾱ used when the previous timestep is before 0: 1 if set_alpha_to_one, else ᾱ₀.</summary>
    public double FinalAlphaCumprod => Config.SetAlphaToOne ? 1.0 : AlphasCumprod[0];

    /// <summary>diffusers <c>DDIMScheduler.step</c>.</summary>
    /// <param name="modelOutput">The model's prediction (ε, v or x₀ per the config).</param>
    /// <param name="timestep">Current timestep t.</param>
    /// <param name="sample">x_t.</param>
    /// <param name="eta">η: 0 = DDIM, 1 = DDPM-like variance.</param>
    /// <param name="useClippedModelOutput">Recompute ε from the clipped x̂₀.</param>
    /// <param name="generator">Randomness for η &gt; 0 when <paramref name="varianceNoise"/> is null.</param>
    /// <param name="varianceNoise">Explicit noise for η &gt; 0.</param>
    public SchedulerStepOutput Step(Tensor modelOutput, long timestep, Tensor sample, double eta = 0, bool useClippedModelOutput = false,
        Generator? generator = null, Tensor? varianceNoise = null)
    {
        CheckStep(modelOutput, sample);
        if (NumInferenceSteps is null) throw new InvalidOperationException("Call SetTimesteps before Step.");
        using var scope = NewDisposeScope();
        long prev = PreviousTimestep(timestep);
        var aT = AlphaBar(timestep, sample);
        var aPrev = prev >= 0 ? AlphaBar(prev, sample) : tensor((float)FinalAlphaCumprod, ScalarType.Float32, sample.device);
        var betaT = 1 - aT;
        var (x0, eps) = Convert(modelOutput, sample, aT);
        if (Config.ClipSample) x0 = x0.clamp(-Config.ClipSampleRange, Config.ClipSampleRange);
        var variance = (1 - aPrev) / betaT * (1 - aT / aPrev);
        var std = eta * variance.sqrt();
        if (useClippedModelOutput) eps = (sample - aT.sqrt() * x0) / betaT.sqrt();
        var dir = (1 - aPrev - std.pow(2)).sqrt() * eps;
        var prevSample = aPrev.sqrt() * x0 + dir;
        if (eta > 0)
        {
            var noise = varianceNoise ?? randn(modelOutput.shape, modelOutput.dtype, generator?.device ?? modelOutput.device, generator: generator).to(modelOutput.device);
            prevSample = prevSample + std * noise;
        }
        return new SchedulerStepOutput(prevSample.to(sample.dtype).MoveToOuterDisposeScope(), x0.to(sample.dtype).MoveToOuterDisposeScope());
    }
}

/// <summary>diffusers <c>DDPMScheduler</c>: ancestral sampling steps with fixed variances for ε, v and x₀ models.</summary>
public sealed class DdpmScheduler : DiffusersScheduler
{
    /// <summary>Creates the scheduler.</summary>
    public DdpmScheduler(SchedulerConfig config) : base(config)
    {
        if (config.VarianceType is not ("fixed_small" or "fixed_small_log" or "fixed_large"))
            throw new NotSupportedException($"variance_type '{config.VarianceType}' is not supported (fixed_small, fixed_small_log, fixed_large).");
    }

    /// <summary>diffusers <c>DDPMScheduler.step</c>; <paramref name="varianceNoise"/> replaces the random draw when given.</summary>
    public SchedulerStepOutput Step(Tensor modelOutput, long timestep, Tensor sample, Generator? generator = null, Tensor? varianceNoise = null)
    {
        CheckStep(modelOutput, sample);
        using var scope = NewDisposeScope();
        long prev = PreviousTimestep(timestep);
        var aT = AlphaBar(timestep, sample);
        var aPrev = prev >= 0 ? AlphaBar(prev, sample) : tensor(1f, ScalarType.Float32, sample.device);
        var betaT = 1 - aT;
        var betaPrev = 1 - aPrev;
        var curAlpha = aT / aPrev;
        var curBeta = 1 - curAlpha;
        var (x0, _) = Convert(modelOutput, sample, aT);
        if (Config.ClipSample) x0 = x0.clamp(-Config.ClipSampleRange, Config.ClipSampleRange);
        var x0Coeff = aPrev.sqrt() * curBeta / betaT;
        var sampleCoeff = curAlpha.sqrt() * betaPrev / betaT;
        var mean = x0Coeff * x0 + sampleCoeff * sample;
        if (timestep > 0)
        {
            var noise = varianceNoise ?? randn(modelOutput.shape, modelOutput.dtype, generator?.device ?? modelOutput.device, generator: generator).to(modelOutput.device);
            var variance = (betaPrev / betaT * curBeta).clamp_min(1e-20);
            Tensor sd = Config.VarianceType switch
            {
                "fixed_small" => variance.sqrt(),
                "fixed_small_log" => (0.5 * variance.log()).exp(),
                _ => curBeta.sqrt(),
            };
            mean = mean + sd * noise;
        }
        return new SchedulerStepOutput(mean.to(sample.dtype).MoveToOuterDisposeScope(), x0.to(sample.dtype).MoveToOuterDisposeScope());
    }
}
