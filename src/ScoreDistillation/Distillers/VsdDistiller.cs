using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>
/// Variational Score Distillation (ProlificDreamer): g = w(t)·(ε̂_cfg(x_t; t, y) − ε_φ(x_t; t, y, c)) with the pretrained prior
/// in one call on [x_t; x_t] and the particle ε_φ conditioned on the flattened camera. The distiller owns ε_φ's AdamW and
/// trains it once per step: MSE on the detached latents at a fresh t ∈ [0, T − 1], ε or v target, camera zeroed with p = 0.1.
/// </summary>
public sealed class VsdDistiller : ScoreDistillerBase
{
    readonly TorchSharp.Modules.Parameter[] _params;
    readonly Tensor[] _expAvg, _expAvgSq;
    long _adamStep;
    double _lastParticleLoss = double.NaN;

    /// <summary>Creates VSD; <paramref name="particle"/> is borrowed (the caller disposes it) and must live on the prior's device.</summary>
    public VsdDistiller(IDiffusionPrior prior, ITrainableNoisePredictor particle, VsdOptions? options = null, Generator? generator = null)
        : base(prior, (options ?? new VsdOptions()).Guidance, generator)
    {
        Particle = particle ?? throw new ArgumentNullException(nameof(particle));
        Options = options ?? new VsdOptions();
        if (particle.LatentShape != prior.LatentShape)
            throw new ArgumentException($"ε_φ latent shape {particle.LatentShape} differs from the prior's {prior.LatentShape}.", nameof(particle));
        if (particle.TrainableParameters.Count == 0) throw new ArgumentException("ε_φ has no trainable parameters.", nameof(particle));
        _params = particle.TrainableParameters.ToArray();
        using (no_grad())
        {
            _expAvg = _params.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
            _expAvgSq = _params.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
        }
    }

    /// <summary>The particle noise predictor ε_φ.</summary>
    public ITrainableNoisePredictor Particle { get; }

    /// <summary>The options.</summary>
    public VsdOptions Options { get; }

    /// <inheritdoc />
    public override string Name => "VSD";

    /// <summary>ε_φ's training loss of the last step (NaN before the first).</summary>
    public double LastParticleLoss => _lastParticleLoss;

    /// <summary>
    /// ε_φ updates skipped because a gradient was NaN or infinite. On a CPU a nonzero count usually means LibTorch's oneDNN
    /// convolution fault: set <see cref="Platform.LibTorchCpu.UseOneDnn"/> to false.
    /// </summary>
    public long SkippedParticleSteps { get; private set; }

    /// <inheritdoc />
    protected override IReadOnlyDictionary<string, double>? ExtraDiagnostics => new Dictionary<string, double>
    {
        ["particle_loss"] = _lastParticleLoss,
        ["particle_skipped_steps"] = SkippedParticleSteps,
    };

    /// <inheritdoc />
    protected override DistillationGradient ComputeGradient(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        var t = step.Timesteps;
        var xt = Prior.Schedule.AddNoise(step.Latents, step.Noise, t);
        double s = At(Guidance.GuidanceScale, step.Progress);
        var tx = step.Text;
        var pre = GuidedPrediction(step, xt, t, s).Guided;
        var cams = step.CameraToWorld.reshape(step.BatchSize, 16);
        var phi = ParticleEpsilon(xt, t, tx.Plain, cams);
        if (Options.ParticleGuidanceScale != 1.0)
        {
            var phi0 = ParticleEpsilon(xt, t, tx.Plain, zeros_like(cams));
            phi = phi0 + Options.ParticleGuidanceScale * (phi - phi0);
        }
        var w = WeightAt(t, xt);
        return new DistillationGradient(w * (pre - phi), MeanSquare(pre, phi));
    }

    /// <inheritdoc />
    protected override void AfterStep(DistillationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (Options.TrainParticleEveryStep)
            _lastParticleLoss = TrainParticle(step.Latents, step.Text.Plain, step.CameraToWorld);
    }

    /// <summary>
    /// One ε_φ training step on detached <paramref name="latents"/> [B, C, h, w] with text [B, L, D] and cameras [B, 4, 4]:
    /// fresh t ~ U{0..T−1}, target ε or v, camera zeroed for the whole batch with probability <see cref="VsdOptions.CameraDropout"/>.
    /// Returns the MSE before the update. A step whose gradient is not finite leaves ε_φ and its optimizer unchanged and
    /// is counted in <see cref="SkippedParticleSteps"/>.
    /// </summary>
    public double TrainParticle(Tensor latents, Tensor text, Tensor cameraToWorld)
    {
        ArgumentNullException.ThrowIfNull(latents);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(cameraToWorld);
        using var scope = NewDisposeScope();
        using var grad = enable_grad();
        var z = latents.detach();
        int b = (int)z.shape[0];
        var t = randint(0, Prior.Schedule.NumTimesteps, new long[] { b }, ScalarType.Int64, Generator.device, generator: Generator).to(z.device);
        var eps = SampleNoise(z);
        var xt = Prior.Schedule.AddNoise(z, eps, t);
        var target = Particle.PredictionType == PredictionType.VPrediction ? Prior.Schedule.Velocity(z, eps, t) : eps;
        var cams = cameraToWorld.detach().to(z.dtype, z.device).reshape(b, 16);
        var coin = rand(new long[] { 1 }, ScalarType.Float64, Generator.device, generator: Generator);
        if (coin.item<double>() < Options.CameraDropout) cams = zeros_like(cams);
        var pred = Particle.Predict(xt, t, text.detach(), cams);
        var loss = nn.functional.mse_loss(pred.to(ScalarType.Float32), target.to(ScalarType.Float32));
        var grads = autograd.grad(new[] { loss }, _params);
        // A non-finite gradient would poison ε_φ for the rest of the run: skip the update and count it instead.
        var present = grads.Where(g => g is not null && !g.IsInvalid).ToArray();
        // One host sync for all parameters.
        if (present.Length > 0 && !stack(present.Select(g => g.isfinite().all()).ToArray()).all().item<bool>())
            SkippedParticleSteps++;
        else
            AdamWStep(grads);
        return loss.item<float>();
    }

    /// <summary>ε_φ's AdamW state as named tensors (step, first and second moments per parameter), for checkpoints. The tensors are copies.</summary>
    public IReadOnlyList<(string Name, Tensor Value)> ParticleOptimizerState()
    {
        var state = new List<(string, Tensor)> { ("step", tensor(new[] { _adamStep })) };
        for (int i = 0; i < _params.Length; i++)
        {
            state.Add(($"exp_avg.{i}", _expAvg[i].detach().clone()));
            state.Add(($"exp_avg_sq.{i}", _expAvgSq[i].detach().clone()));
        }
        return state;
    }

    /// <summary>Restores ε_φ's AdamW state saved by <see cref="ParticleOptimizerState"/>.</summary>
    /// <exception cref="ArgumentException">A tensor is missing or has another shape (the message names it).</exception>
    public void LoadParticleOptimizerState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        Tensor Get(string name, long[] shape)
        {
            if (!state.TryGetValue(name, out var t)) throw new ArgumentException($"ε_φ optimizer state has no '{name}'.", nameof(state));
            if (!t.shape.SequenceEqual(shape))
                throw new ArgumentException($"ε_φ optimizer state '{name}' is [{string.Join(", ", t.shape)}], expected [{string.Join(", ", shape)}].", nameof(state));
            return t;
        }
        using var _ = no_grad();
        for (int i = 0; i < _params.Length; i++)
        {
            _expAvg[i].copy_(Get($"exp_avg.{i}", _expAvg[i].shape));
            _expAvgSq[i].copy_(Get($"exp_avg_sq.{i}", _expAvgSq[i].shape));
        }
        _adamStep = Get("step", new long[] { 1 }).to(ScalarType.Int64).cpu().data<long>()[0];
    }

    /// <summary>torch.optim.AdamW (decoupled weight decay, bias-corrected moments) on ε_φ's parameters.</summary>
    void AdamWStep(IList<Tensor> grads)
    {
        using var ng = no_grad();
        _adamStep++;
        double lr = Options.LearningRate, b1 = Options.Betas.Beta1, b2 = Options.Betas.Beta2;
        double bc1 = 1 - Math.Pow(b1, _adamStep), bc2 = 1 - Math.Pow(b2, _adamStep);
        for (int i = 0; i < _params.Length; i++)
        {
            var g = grads[i];
            if (g is null || g.IsInvalid) continue;
            _params[i].mul_(1 - lr * Options.WeightDecay);
            _expAvg[i].mul_(b1).add_(g, alpha: 1 - b1);
            _expAvgSq[i].mul_(b2).addcmul_(g, g, value: 1 - b2);
            using var denom = (_expAvgSq[i].sqrt() / Math.Sqrt(bc2)).add_(Options.AdamEpsilon);
            _params[i].addcdiv_(_expAvg[i], denom, value: -lr / bc1);
        }
    }

    Tensor ParticleEpsilon(Tensor xt, Tensor t, Tensor text, Tensor cams)
    {
        var raw = Particle.Predict(xt, t, text, cams);
        return Particle.PredictionType == PredictionType.VPrediction ? Prior.Schedule.EpsilonFromVelocity(xt, raw, t) : raw;
    }

    /// <summary>Disposes the optimiser (not the particle, which the caller owns).</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in _expAvg) t.Dispose();
            foreach (var t in _expAvgSq) t.Dispose();
        }
        base.Dispose(disposing);
    }
}
