using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Outputs;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Training;

/// <summary>
/// The training loop: prompts → text embeddings → generator → fields → volume renders from sampled cameras → distiller
/// loss + regularisers → backward → optimizer step over named parameter groups. Prompt-specific training is the case of a
/// one-prompt library (and a generator that ignores the text); amortized training samples prompts from the library's
/// train split. Each step runs in its own dispose scope (memory stays flat). Checkpoints hold everything needed to
/// continue bit-exactly on the CPU.
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly Generator _rng;
    readonly ParameterGroupOptimizer _optimizer;
    readonly CameraSampler _sampler;
    readonly Dictionary<string, TextConditioning> _text = new(StringComparer.Ordinal);
    readonly List<TrainingStep> _history = new();
    readonly nn.Module? _separateBackground;
    readonly Device _device;

    /// <summary>Creates a trainer. The generator (and a module background) must already be on the training device.</summary>
    /// <param name="generator">The 3D generator (trained).</param>
    /// <param name="distiller">The score distiller (its prior is frozen).</param>
    /// <param name="renderer">The volume renderer.</param>
    /// <param name="prompts">Prompt library; training samples its train split.</param>
    /// <param name="options">Settings.</param>
    /// <param name="background">Background; null uses the generator's, or white when it has none.</param>
    /// <param name="embeddingCache">Optional on-disk text-embedding cache.</param>
    public Trainer(I3DGenerator generator, IScoreDistiller distiller, VolumeRenderer renderer, PromptLibrary prompts, TrainerOptions options,
        IBackground? background = null, EmbeddingCache? embeddingCache = null)
    {
        Generator3D = generator ?? throw new ArgumentNullException(nameof(generator));
        Distiller = distiller ?? throw new ArgumentNullException(nameof(distiller));
        Renderer = renderer ?? throw new ArgumentNullException(nameof(renderer));
        Prompts = prompts ?? throw new ArgumentNullException(nameof(prompts));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Options.Validate();
        EmbeddingCache = embeddingCache;
        Background = background ?? generator.Background ?? new SolidColorBackground(1, 1, 1);
        _device = Options.Device ?? distiller.Prior.Device;
        _rng = new Generator((ulong)Options.Seed, CPU);
        int views = distiller.Prior.ViewsPerSample;
        _sampler = new CameraSampler(Options.Cameras with { ViewsPerSample = views, Device = _device, DType = Options.DType });

        var groups = generator.ParameterGroups.Select(kv => new ParameterGroup(kv.Key, kv.Value, LearningRate(kv.Key))).ToList();
        if (Background is nn.Module bgModule)
        {
            var owned = new HashSet<IntPtr>(generator.Module.parameters().Select(p => p.Handle));
            var bgParams = bgModule.parameters().Where(p => p.requires_grad && !owned.Contains(p.Handle)).ToArray();
            if (bgParams.Length > 0)
            {
                _separateBackground = bgModule;
                var name = groups.Any(g => g.Name == "background") ? "background_extra" : "background";
                groups.Add(new ParameterGroup(name, bgParams, LearningRate("background")));
            }
        }
        groups = groups.Where(g => g.Parameters.Count > 0).ToList();
        _optimizer = Options.Optimizer == OptimizerKind.Adan
            ? new AdanOptimizer(groups, Options.AdanBetas.Beta1, Options.AdanBetas.Beta2, Options.AdanBetas.Beta3, Options.AdanEps)
            : new AdamOptimizer(groups, Options.AdamBetas.Beta1, Options.AdamBetas.Beta2, Options.AdamEps);
    }

    double LearningRate(string group) => Options.LearningRates.TryGetValue(group, out var lr) ? lr : Options.DefaultLearningRate;

    /// <summary>The generator being trained.</summary>
    public I3DGenerator Generator3D { get; }

    /// <summary>The distiller.</summary>
    public IScoreDistiller Distiller { get; }

    /// <summary>The renderer.</summary>
    public VolumeRenderer Renderer { get; }

    /// <summary>The prompts.</summary>
    public PromptLibrary Prompts { get; }

    /// <summary>Settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>The background used in training renders.</summary>
    public IBackground Background { get; }

    /// <summary>Optional text-embedding cache.</summary>
    public EmbeddingCache? EmbeddingCache { get; }

    /// <summary>The optimizer (parameter groups and their learning rates).</summary>
    public ParameterGroupOptimizer Optimizer => _optimizer;

    /// <summary>Completed optimizer steps.</summary>
    public int Step { get; private set; }

    /// <summary>Every step so far (restored from checkpoints).</summary>
    public IReadOnlyList<TrainingStep> History => _history;

    /// <summary>Optional evaluation callback (e.g. IoU against a ground truth), run every <see cref="TrainerOptions.EvaluateEvery"/> steps and at the end.</summary>
    public Func<Trainer, IReadOnlyDictionary<string, double>>? Evaluator { get; set; }

    /// <summary>Extra host values copied into every checkpoint's metadata (e.g. how to rebuild the generator for export).</summary>
    public Dictionary<string, string> CheckpointMetadata { get; } = new(StringComparer.Ordinal);

    /// <summary>Text conditioning of one prompt (cached for the trainer's lifetime).</summary>
    public TextConditioning TextFor(string prompt)
    {
        if (!_text.TryGetValue(prompt, out var t))
        {
            var prior = Distiller.Prior;
            using var scope = NewDisposeScope();
            var enc = EmbeddingCache is null ? prior.EncodeText(new[] { prompt }) : EmbeddingCache.Encode(prior, new[] { prompt });
            enc.Tokens.DetachFromDisposeScope();
            enc.Pooled.DetachFromDisposeScope();
            _text[prompt] = t = enc;
        }
        return t;
    }

    TextConditioning TextFor(IReadOnlyList<string> prompts) => TextConditioning.Concat(prompts.Select(TextFor).ToArray());

    /// <summary>Runs one optimizer step (all micro-batches) and returns what it did.</summary>
    public TrainingStep TrainStep()
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        int accum = Options.GradientAccumulation;
        double loss = 0, dist = 0;
        var terms = new Dictionary<string, double>();
        var prompts = new List<string>();
        var timesteps = new List<long>();
        var train = Prompts.Train;
        long step = Step;
        double wDist = Options.DistillationWeight.At(step), wSparse = Options.SparsityWeight.At(step),
            wOpaque = Options.OpaqueWeight.At(step), wEik = Options.EikonalWeight.At(step);
        for (int micro = 0; micro < accum; micro++)
        {
            var idx = randint(0, train.Count, new long[] { Options.PromptsPerStep }, ScalarType.Int64, CPU, generator: _rng).data<long>().ToArray();
            var batch = idx.Select(i => train[(int)i]).ToArray();
            prompts.AddRange(batch);
            using var text = TextFor(batch);
            var noise = Options.NoiseDims > 0 ? randn(new long[] { batch.Length, Options.NoiseDims }, generator: _rng).to(_device) : null;
            var field = Generator3D.Generate(text, noise);
            using var cams = _sampler.Sample(batch.Length * Options.ViewsPerPrompt, _rng);
            int views = cams.Count / batch.Length;
            var perImage = batch.SelectMany(p => Enumerable.Repeat(p, views)).ToArray();
            using var render = Renderer.Render(field, cams, Options.RenderSize, Options.RenderSize, Background, text.Pooled, _rng);
            var result = Distiller.Distill(new DistillationInput(render.Rgb.to(Options.DType), perImage, cams, new TrainingProgress(Step, Options.Steps)));
            var total = result.Loss * wDist;
            var parts = new List<(string, Tensor)>();
            if (wSparse != 0) parts.Add(("sparsity", Regularizers.Sparsity(render.Opacity) * wSparse));
            if (wOpaque != 0) parts.Add(("opaque", Regularizers.OpacityEntropy(render.Opacity) * wOpaque));
            if (wEik != 0 && field.Kind == FieldKind.SignedDistance)
            {
                if (Options.EikonalFiniteDifference is { } h)
                {
                    var pts = EikonalPoints(field);
                    parts.Add(("eikonal", Regularizers.NumericalEikonal(field, pts, h) * wEik));
                }
                else if (render.SampleGradients is not null)
                    parts.Add(("eikonal", Regularizers.Eikonal(render.SampleGradients) * wEik));
            }
            foreach (var (_, t) in parts) total = total + t;
            (total / accum).backward();
            loss += total.item<float>() / accum;
            dist += result.Loss.item<float>() / accum;
            foreach (var (name, t) in parts) terms[name] = terms.GetValueOrDefault(name) + t.item<float>() / accum;
            timesteps.AddRange(result.Diagnostics.Timesteps);
        }
        double gradNorm = _optimizer.GradientNorm();
        _optimizer.Step();
        _optimizer.ZeroGrad();
        Step++;
        var record = new TrainingStep(Step, Options.Steps, loss, dist, gradNorm, sw.Elapsed.TotalSeconds, prompts, timesteps) { Terms = terms };
        _history.Add(record);
        return record;
    }

    /// <summary>Points [B, N, 3] for the finite-difference eikonal term: uniform in the cube, or the candidates nearest the surface.</summary>
    internal Tensor EikonalPoints(IRadianceField field)
    {
        int n = Options.EikonalPoints, candidates = Options.EikonalNearSurface ? 8 * n : n;
        var pts = (rand(new long[] { field.Count, candidates, 3 }, generator: _rng) * 2 - 1).to(Options.DType, _device) * (Options.EikonalExtent ?? field.Radius);
        if (!Options.EikonalNearSurface) return pts;
        using var guard = no_grad();
        var nearest = field.QueryGeometry(pts).squeeze(-1).abs().topk(n, dim: 1, largest: false).indexes;
        return pts.gather(1, nearest.unsqueeze(-1).expand(-1, -1, 3));
    }

    /// <summary>
    /// Trains until <see cref="TrainerOptions.Steps"/>, reporting every step, evaluating and checkpointing as configured.
    /// Cancellation stops between steps (after writing a checkpoint when an output folder is set).
    /// </summary>
    public IReadOnlyList<TrainingStep> Train(CancellationToken cancellationToken = default, IProgress<TrainingStep>? progress = null)
    {
        var store = Options.OutputDirectory is null ? null : new CheckpointStore(Path.Combine(Options.OutputDirectory, "checkpoints"));
        while (Step < Options.Steps)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                if (store is not null) using (var ck = CreateCheckpoint()) store.Save(ck);
                cancellationToken.ThrowIfCancellationRequested();
            }
            var s = TrainStep();
            bool last = Step == Options.Steps;
            if ((Options.EvaluateEvery > 0 && Step % Options.EvaluateEvery == 0) || last)
            {
                var eval = Evaluate();
                s = s with { Evaluation = eval };
                _history[^1] = s;
            }
            if (store is not null && ((Options.CheckpointEvery > 0 && Step % Options.CheckpointEvery == 0) || last))
                using (var ck = CreateCheckpoint()) store.Save(ck);
            progress?.Report(s);
        }
        return _history;
    }

    /// <summary>Runs the evaluator and, with an output folder, writes an orbit contact sheet of the first validation prompts.</summary>
    public IReadOnlyDictionary<string, double> Evaluate()
    {
        var metrics = Evaluator?.Invoke(this) ?? new Dictionary<string, double>();
        if (Options.OutputDirectory is not null)
        {
            using var scope = NewDisposeScope();
            var shown = Prompts.Val.Take(4).ToArray();
            var frames = cat(shown.Select(p => RenderOrbit(p, Options.EvaluationViews, Options.EvaluationSize)).ToArray(), 0);
            ImageWriter.SaveContactSheet(frames, Path.Combine(Options.OutputDirectory, "eval", $"step-{Step:D6}.png"), Options.EvaluationViews);
        }
        return metrics;
    }

    /// <summary>Renders an orbit of <paramref name="views"/> views (evaluation cameras) of one prompt: [V, 3, S, S] in [0, 1], no gradient.</summary>
    public Tensor RenderOrbit(string prompt, int views, int size, bool closed = false)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var text = TextFor(new[] { prompt });
        var field = Generator3D.Generate(text, EvaluationNoise(1));
        using var cams = Cameras.Orbit(views, Options.EvaluationElevation, Options.EvaluationDistance, Options.EvaluationFovY, closed, device: _device, dtype: Options.DType);
        var bg = Background is RandomSolidColorBackground r ? r.Inner : Background;
        using var render = Renderer.Render(field, cams, size, size, bg, text.Pooled, null);
        return render.Rgb.detach().clamp(0, 1).MoveToOuterDisposeScope();
    }

    /// <summary>The fields of <paramref name="prompts"/> (no gradient), for metrics and export; caller keeps it inside a dispose scope.</summary>
    public IRadianceField FieldFor(IReadOnlyList<string> prompts)
    {
        using var noGrad = no_grad();
        using var text = TextFor(prompts);
        return Generator3D.Generate(text, EvaluationNoise(prompts.Count));
    }

    Tensor? EvaluationNoise(int count)
    {
        if (Options.NoiseDims <= 0) return null;
        using var g = new Generator(0, CPU);
        return randn(new long[] { count, Options.NoiseDims }, generator: g).to(_device);
    }

    /// <summary>
    /// Extracts a coloured mesh of one prompt: the field on a <paramref name="resolution"/>³ grid over
    /// [−<paramref name="extent"/>, <paramref name="extent"/>]³, iso-surface at SDF 0 (or density
    /// <paramref name="densityThreshold"/>), vertex colours from the field's features (sigmoid).
    /// </summary>
    public Mesh ExtractMesh(string prompt, int resolution = 96, double extent = 1.0, double densityThreshold = 10.0)
    {
        if (resolution < 2) throw new ArgumentOutOfRangeException(nameof(resolution));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var field = FieldFor(new[] { prompt });
        var axis = linspace(-extent, extent, resolution, ScalarType.Float32, _device);
        var grid = stack(meshgrid(new[] { axis, axis, axis }, "ij"), -1).reshape(1, -1, 3);
        var values = new List<Tensor>();
        const int chunk = 1 << 16;
        for (long s = 0; s < grid.shape[1]; s += chunk)
        {
            var pts = grid.narrow(1, s, Math.Min(chunk, grid.shape[1] - s));
            var g = field.QueryGeometry(pts).reshape(-1);
            if (field.Kind == FieldKind.Density)
            {
                if (Renderer.Options.DensityBias == Rendering.DensityBias.Blob)
                    g = g + Renderer.Options.BlobDensity * (1 - pts.reshape(-1, 3).norm(1) / Renderer.Options.BlobRadius);
                g = nn.functional.softplus(g).neg();
            }
            values.Add(g.to(ScalarType.Float32).cpu());
        }
        var flat = cat(values.ToArray(), 0).data<float>().ToArray();
        float level = field.Kind == FieldKind.Density ? (float)-densityThreshold : 0f;
        var (positions, indices) = IsoSurface.Extract(flat, resolution, (float)-extent, (float)extent, level);
        var colors = new List<Vector3>(positions.Count);
        for (int s = 0; s < positions.Count; s += chunk)
        {
            int n = Math.Min(chunk, positions.Count - s);
            var pts = tensor(positions.Skip(s).Take(n).SelectMany(p => new[] { p.X, p.Y, p.Z }).ToArray(), new long[] { 1, n, 3 }).to(_device);
            var rgb = field.Query(pts).Features.sigmoid().reshape(-1, 3).to(ScalarType.Float32).cpu().data<float>().ToArray();
            for (int i = 0; i < n; i++) colors.Add(new Vector3(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]));
        }
        return new Mesh(positions, colors, indices);
    }

    /// <summary>The configuration fingerprint a checkpoint must match to be resumed.</summary>
    public IReadOnlyDictionary<string, string> Configuration()
    {
        var o = Options;
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        var prior = Distiller.Prior;
        var trainHash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", Prompts.Train))))[..16];
        return new Dictionary<string, string>
        {
            ["generator"] = Generator3D.GetType().Name,
            ["generator.parameters"] = string.Join(",", Generator3D.Module.named_parameters().Select(p => $"{p.name}[{string.Join("x", p.parameter.shape)}]")).GetHashCode(StringComparison.Ordinal).ToString("x8", CultureInfo.InvariantCulture) + $"/{Generator3D.Module.parameters().Sum(p => p.numel())}",
            ["background"] = Background.GetType().Name,
            ["distiller"] = Distiller.Name,
            ["prior"] = prior.ModelId,
            ["renderer"] = Renderer.Options.ToString(),
            ["optimizer"] = o.Optimizer == OptimizerKind.Adam ? $"Adam({F(o.AdamBetas.Beta1)},{F(o.AdamBetas.Beta2)},{F(o.AdamEps)})" : $"Adan({F(o.AdanBetas.Beta1)},{F(o.AdanBetas.Beta2)},{F(o.AdanBetas.Beta3)},{F(o.AdanEps)})",
            ["learning_rates"] = string.Join(",", _optimizer.Groups.Select(g => $"{g.Name}={F(g.LearningRate)}")),
            ["steps"] = o.Steps.ToString(CultureInfo.InvariantCulture),
            ["batch"] = $"{o.PromptsPerStep}x{(o.ViewsPerPrompt == 1 ? "" : $"{o.ViewsPerPrompt}x")}{prior.ViewsPerSample}@{o.RenderSize} accum {o.GradientAccumulation}",
            ["weights"] = $"dist {o.DistillationWeight}; sparsity {o.SparsityWeight}; opaque {o.OpaqueWeight}; eikonal {o.EikonalWeight}{(o.EikonalFiniteDifference is { } h ? $" (central differences h={F(h)} at {o.EikonalPoints} points in ±{F(o.EikonalExtent ?? double.NaN)}{(o.EikonalNearSurface ? ", nearest the surface" : "")})" : "")}",
            ["cameras"] = (o.Cameras with { Device = null }).ToString(),
            ["train_prompts"] = $"{Prompts.Train.Count} ({trainHash})",
            ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Captures the complete training state.</summary>
    public Checkpoint CreateCheckpoint()
    {
        var ck = new Checkpoint(Step, Configuration());
        ck.AddModule("generator", Generator3D.Module);
        if (_separateBackground is not null) ck.AddModule("background", _separateBackground);
        ck.Add("optimizer", _optimizer.StateTensors());
        ck.AddRng("rng/trainer", _rng);
        if (Distiller is ScoreDistillerBase b) ck.AddRng("rng/distiller", b.Generator);
        if (Distiller is VsdDistiller vsd)
        {
            ck.Add("particle", vsd.Particle.TrainableParameters.Select((p, i) => ($"{i}", (Tensor)p)));
            ck.Add("particle_optimizer", vsd.ParticleOptimizerState());
        }
        ck.Metadata["history"] = JsonSerializer.Serialize(_history.Select(h => new[] { h.Step, h.Loss, h.DistillationLoss, h.GradientNorm, h.Seconds }));
        ck.Metadata["train_prompts"] = JsonSerializer.Serialize(Prompts.Train);
        foreach (var (k, v) in CheckpointMetadata) ck.Metadata[k] = v;
        return ck;
    }

    /// <summary>Restores a checkpoint written by a trainer of the same configuration (otherwise throws naming the differences).</summary>
    public void Restore(Checkpoint checkpoint, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        checkpoint.EnsureCompatible(Configuration(), source);
        RestoreWeights(checkpoint);
        _optimizer.LoadState(checkpoint.Section("optimizer"));
        checkpoint.LoadRng("rng/trainer", _rng);
        if (Distiller is ScoreDistillerBase b && checkpoint.Has("rng/distiller")) checkpoint.LoadRng("rng/distiller", b.Generator);
        if (Distiller is VsdDistiller vsd && checkpoint.Has("particle"))
        {
            var saved = checkpoint.Section("particle");
            using (no_grad())
                for (int i = 0; i < vsd.Particle.TrainableParameters.Count; i++) vsd.Particle.TrainableParameters[i].copy_(saved[$"{i}"]);
            if (checkpoint.Has("particle_optimizer"))
                vsd.LoadParticleOptimizerState(checkpoint.Section("particle_optimizer"));
        }
        Step = (int)checkpoint.Step;
        _history.Clear();
        if (checkpoint.Metadata.TryGetValue("history", out var h))
            foreach (var row in JsonSerializer.Deserialize<double[][]>(h) ?? Array.Empty<double[]>())
                _history.Add(new TrainingStep((int)row[0], Options.Steps, row[1], row[2], row[3], row[4], Array.Empty<string>(), Array.Empty<long>()));
    }

    /// <summary>Loads only the generator (and background) weights, e.g. to render or export a checkpoint.</summary>
    public void RestoreWeights(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        checkpoint.LoadModule("generator", Generator3D.Module);
        if (_separateBackground is not null && checkpoint.Has("background")) checkpoint.LoadModule("background", _separateBackground);
    }

    /// <summary>Disposes the optimizer state, cached embeddings and random stream (not the generator, distiller or renderer).</summary>
    public void Dispose()
    {
        _optimizer.Dispose();
        foreach (var t in _text.Values) t.Dispose();
        _text.Clear();
        _rng.Dispose();
    }
}
