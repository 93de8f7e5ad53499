using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>Everything a distiller's gradient needs for one step. Tensors live in the step's dispose scope.</summary>
/// <param name="Latents">Detached clean latents z [B, C, h, w].</param>
/// <param name="Timesteps">t [B] (int64).</param>
/// <param name="Noise">ε [B, C, h, w].</param>
/// <param name="Text">The step's text embeddings.</param>
/// <param name="Cameras">Cameras [B, 4, 4] for camera-aware priors, else null.</param>
/// <param name="CameraToWorld">Camera-to-world [B, 4, 4] of the renders (always present).</param>
/// <param name="Progress">Training progress.</param>
/// <param name="MinStep">The current annealed t_min.</param>
/// <param name="MaxStep">The current annealed t_max.</param>
/// <param name="Overrides">The caller's explicit values, if any.</param>
public sealed record DistillationStep(Tensor Latents, Tensor Timesteps, Tensor Noise, PromptBatch Text, Tensor? Cameras, Tensor CameraToWorld,
    TrainingProgress Progress, int MinStep, int MaxStep, DistillationOverrides? Overrides)
{
    /// <summary>Batch size B.</summary>
    public int BatchSize => (int)Latents.shape[0];
}

/// <summary>A distiller's raw output before NaN handling, clipping and the target trick.</summary>
/// <param name="Gradient">g [B, C, h, w] (already weighted by w(t)).</param>
/// <param name="Residual">Scalar tensor: mean squared residual the gradient was built from.</param>
/// <param name="TimestepShifts">Δt [B] (int64) or null.</param>
public sealed record DistillationGradient(Tensor Gradient, Tensor Residual, Tensor? TimestepShifts = null);

/// <summary>
/// The shared pipeline of every distiller: validate the input, encode the renders (gradient flows to the RGB), draw t and ε
/// (or take the overrides), build the text batch, let the distiller compute g without gradient, apply NaN→0 and clipping,
/// and return the target-trick loss with diagnostics.
/// </summary>
public abstract class ScoreDistillerBase : IScoreDistiller, IDisposable
{
    readonly bool _ownsGenerator;

    /// <summary>Creates the pipeline around <paramref name="prior"/>.</summary>
    /// <param name="prior">The frozen prior.</param>
    /// <param name="guidance">Shared options.</param>
    /// <param name="generator">Randomness; null creates one seeded with <see cref="GuidanceOptions.Seed"/> on the prior's device.</param>
    protected ScoreDistillerBase(IDiffusionPrior prior, GuidanceOptions guidance, Generator? generator)
    {
        Prior = prior ?? throw new ArgumentNullException(nameof(prior));
        Guidance = guidance ?? throw new ArgumentNullException(nameof(guidance));
        _ownsGenerator = generator is null;
        Generator = generator ?? new Generator((ulong)guidance.Seed, prior.Device);
    }

    /// <summary>Disposes the generator when the distiller created it (an injected one stays the caller's).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases owned resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing && _ownsGenerator) Generator.Dispose();
    }

    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public IDiffusionPrior Prior { get; }

    /// <summary>The shared options.</summary>
    public GuidanceOptions Guidance { get; }

    /// <summary>The generator every random draw uses.</summary>
    public Generator Generator { get; }

    /// <summary>Whether the distiller needs the null ("") text (CSD).</summary>
    protected virtual bool NeedsNullText => false;

    /// <summary>Extra diagnostics of the last step (e.g. ε_φ's training loss).</summary>
    protected virtual IReadOnlyDictionary<string, double>? ExtraDiagnostics => null;

    /// <summary>Computes g for one step; called under no_grad.</summary>
    protected abstract DistillationGradient ComputeGradient(DistillationStep step);

    /// <summary>Hook after the gradient, with grad mode restored (VSD trains ε_φ here).</summary>
    protected virtual void AfterStep(DistillationStep step) { }

    /// <inheritdoc />
    public DistillationResult Distill(DistillationInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        Validate(input);
        int b = (int)input.Images.shape[0];
        var latents = Prior.EncodeImages(input.Images, Generator);
        var ls = Prior.LatentShape;
        if (latents.dim() != 4 || latents.shape[0] != b || latents.shape[1] != ls.Channels || latents.shape[2] != ls.Height || latents.shape[3] != ls.Width)
            throw new InvalidOperationException($"The prior encoded [{string.Join(", ", input.Images.shape)}] to [{string.Join(", ", latents.shape)}], expected [{b}, {ls.Channels}, {ls.Height}, {ls.Width}].");
        var (tMin, tMax) = GuidanceMath.TimestepWindow(Guidance, Prior.Schedule.NumTimesteps, input.Progress);
        var o = input.Overrides;
        var t = o?.Timesteps is { } tt ? CheckTimesteps(tt, b, latents.device) : SampleTimesteps(b, tMin, tMax, latents.device);
        Tensor noise;
        if (o?.Noise is { } nz)
        {
            if (!nz.shape.SequenceEqual(latents.shape))
                throw new ArgumentException($"Noise override has shape [{string.Join(", ", nz.shape)}]; the latents are [{string.Join(", ", latents.shape)}].", nameof(input));
            noise = nz.detach().to(latents.dtype, latents.device);
        }
        else noise = SampleNoise(latents);
        var negatives = input.NegativePrompts ?? Enumerable.Repeat(Guidance.NegativePrompt, b).ToArray();
        var text = PromptBatch.Build(Prior, input.Prompts, negatives, input.Cameras, Guidance.ViewDependent, NeedsNullText);
        var c2w = input.Cameras.CameraToWorld.detach().to(latents.dtype, latents.device);
        var step = new DistillationStep(latents.detach(), t, noise, text, Prior.UsesCameras ? c2w : null, c2w, input.Progress, tMin, tMax, o);

        DistillationGradient raw;
        using (no_grad()) raw = ComputeGradient(step);
        var g = raw.Gradient.detach();
        if (Guidance.NanToNum) g = g.nan_to_num();
        if (Guidance.GradientClip is { } clip)
        {
            double c = clip.ValueAt(input.Progress);
            g = g.clamp(-c, c);
        }
        g = PostProcess(g, input.Progress);
        AfterStep(step);
        var loss = GuidanceMath.TargetTrickLoss(latents, g);

        var shifts = raw.TimestepShifts ?? zeros_like(t);
        using var stats = stack(new[] { g.pow(2).sum().sqrt().to(ScalarType.Float64), raw.Residual.to(ScalarType.Float64) }).cpu();
        var s = stats.data<double>().ToArray();
        using var tc = t.cpu();
        using var sc = shifts.to(ScalarType.Int64).cpu();
        var diag = new DistillationDiagnostics(tc.data<long>().ToArray(), sc.data<long>().ToArray(), s[0], s[1]) { Extras = ExtraDiagnostics };
        return new DistillationResult(loss.MoveToOuterDisposeScope(), g.MoveToOuterDisposeScope(), diag);
    }

    /// <summary>Hook after NaN handling and clipping (CSD's normalisation).</summary>
    protected virtual Tensor PostProcess(Tensor gradient, TrainingProgress progress) => gradient;

    /// <summary>t ~ U{t_min..t_max} (inclusive), one per sample shared by its views, or one for the batch.</summary>
    protected Tensor SampleTimesteps(int batch, int tMin, int tMax, Device device)
    {
        int v = Prior.ViewsPerSample;
        int n = Guidance.SharedTimestep ? 1 : batch / v;
        var draw = randint(tMin, tMax + 1, new long[] { n }, ScalarType.Int64, Generator.device, generator: Generator);
        return draw.to(device).repeat_interleave(batch / n);
    }

    /// <summary>ε ~ N(0, I) shaped like <paramref name="like"/>.</summary>
    protected Tensor SampleNoise(Tensor like)
    {
        var n = randn(like.shape, like.dtype, Generator.device, generator: Generator);
        return n.device == like.device ? n : n.to(like.device);
    }

    /// <summary>U(0, 1) [n] on <paramref name="device"/>.</summary>
    protected Tensor SampleUniform(long n, Device device, ScalarType dtype = ScalarType.Float32)
    {
        var u = rand(new long[] { n }, dtype, Generator.device, generator: Generator);
        return u.device == device ? u : u.to(device);
    }

    /// <summary>Repeats per-sample values so all views of a sample share them.</summary>
    protected Tensor PerSample(Tensor perSample, int batch) => perSample.shape[0] == batch ? perSample : perSample.repeat_interleave(batch / perSample.shape[0]);

    /// <summary>Scalar at the current progress.</summary>
    protected static double At(ScalarSchedule schedule, TrainingProgress progress) => schedule.ValueAt(progress);

    /// <summary>w(t) [B, 1, 1, 1].</summary>
    protected Tensor WeightAt(Tensor t, Tensor like) => GuidanceMath.Weight(Prior.Schedule, t, Guidance.Weighting, (int)like.dim(), like.dtype);

    /// <summary>One prediction for a batch of blocks (all in one <see cref="IDiffusionPrior.PredictNoise"/> call), split back per block.</summary>
    protected Tensor[] Predict(DistillationStep step, params (Tensor X, Tensor T, Tensor Text)[] blocks)
    {
        ArgumentNullException.ThrowIfNull(step);
        ArgumentNullException.ThrowIfNull(blocks);
        var x = cat(blocks.Select(b => b.X).ToArray(), 0);
        var ts = cat(blocks.Select(b => b.T).ToArray(), 0);
        var text = cat(blocks.Select(b => b.Text).ToArray(), 0);
        Tensor? cams = step.Cameras is null ? null : cat(Enumerable.Repeat(step.Cameras, blocks.Length).ToArray(), 0);
        var eps = Prior.PredictNoise(new NoiseQuery(x, ts, text, cams));
        if (!eps.shape.SequenceEqual(x.shape))
            throw new InvalidOperationException($"The prior predicted [{string.Join(", ", eps.shape)}] for input [{string.Join(", ", x.shape)}].");
        return eps.split(blocks.Select(b => b.X.shape[0]).ToArray(), 0);
    }

    /// <summary>
    /// The guided prediction ε̂_cfg(x_t; t, y) — CFG over [cond; uncond], or Perp-Neg with the step's view negatives — computed in
    /// the same single prior call as any <paramref name="extra"/> blocks, whose raw predictions are returned alongside.
    /// </summary>
    protected (Tensor Guided, Tensor[] Extra) GuidedPrediction(DistillationStep step, Tensor xt, Tensor t, double scale,
        params (Tensor X, Tensor T, Tensor Text)[] extra)
    {
        ArgumentNullException.ThrowIfNull(step);
        ArgumentNullException.ThrowIfNull(extra);
        var tx = step.Text;
        var blocks = new List<(Tensor, Tensor, Tensor)> { (xt, t, tx.Cond), (xt, t, tx.Uncond) };
        if (tx.UsesPerpNeg) blocks.AddRange(tx.PerpNegatives!.Select(n => (xt, t, n)));
        int guided = blocks.Count;
        blocks.AddRange(extra);
        var p = Predict(step, blocks.ToArray());
        var eps = tx.UsesPerpNeg
            ? GuidanceMath.PerpNegCfg(p[0], p[1], p[2..guided], tx.PerpWeights!, scale)
            : GuidanceMath.Cfg(p[0], p[1], scale, Guidance.CfgForm);
        return (eps, p[guided..]);
    }

    /// <summary>Mean of (a − b)² as a scalar tensor.</summary>
    protected static Tensor MeanSquare(Tensor a, Tensor b) => (a - b).pow(2).mean();

    void Validate(DistillationInput input)
    {
        var img = input.Images ?? throw new ArgumentException("Images are null.", nameof(input));
        if (input.Prompts is null || input.Prompts.Count == 0) throw new ArgumentException("The prompt list is empty: give one prompt per image.", nameof(input));
        if (img.dim() != 4 || img.shape[1] != 3)
            throw new ArgumentException($"Images must be RGB [B, 3, H, W], got [{string.Join(", ", img.shape)}].", nameof(input));
        long b = img.shape[0];
        if (b == 0) throw new ArgumentException("The image batch is empty.", nameof(input));
        if (input.Prompts.Count != b) throw new ArgumentException($"Batch size mismatch: {b} images but {input.Prompts.Count} prompts.", nameof(input));
        if (input.Cameras is null) throw new ArgumentException("Cameras are null.", nameof(input));
        if (input.Cameras.Count != b) throw new ArgumentException($"Batch size mismatch: {b} images but {input.Cameras.Count} cameras.", nameof(input));
        if (input.NegativePrompts is { } neg && neg.Count != b)
            throw new ArgumentException($"Batch size mismatch: {b} images but {neg.Count} negative prompts.", nameof(input));
        if (b % Prior.ViewsPerSample != 0)
            throw new ArgumentException($"Batch size {b} is not a multiple of the prior's {Prior.ViewsPerSample} views per sample.", nameof(input));
        using (no_grad())
        {
            using var bad = img.isfinite().logical_not().any();
            if (bad.item<bool>()) throw new ArgumentException("Images contain NaN or infinite values.", nameof(input));
        }
    }

    Tensor CheckTimesteps(Tensor t, int b, Device device)
    {
        if (t.dim() != 1 || t.shape[0] != b)
            throw new ArgumentException($"Timestep override must be [{b}], got [{string.Join(", ", t.shape)}].");
        var tl = t.to(ScalarType.Int64, device);
        int T = Prior.Schedule.NumTimesteps;
        using var bad = tl.lt(0).logical_or(tl.gt(T - 1)).any();
        if (bad.item<bool>())
        {
            using var lo = tl.min(); using var hi = tl.max();
            throw new ArgumentOutOfRangeException(nameof(t), $"Timesteps out of range: [{lo.item<long>()}, {hi.item<long>()}] is not inside [0, {T - 1}].");
        }
        return tl;
    }
}
