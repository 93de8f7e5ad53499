using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Diffusion.MVDream;
using ScoreDistillation.Diffusion.StableDiffusion;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Outputs;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Cli;

/// <summary>Which prior and device the user asked for.</summary>
sealed record PriorChoice(string? Model, string? MvDream, string Device, string DType = "float32", string BuiltIn = Recipes.DefaultBuiltInMode);

/// <summary>What to train with.</summary>
sealed record RunSettings(string Generator, string Distiller, int? Steps, long Seed, PriorChoice Prior);

/// <summary>One composed training setup (prior, generator, distiller, renderer, trainer) plus its outputs.</summary>
sealed class Session : IDisposable
{
    static readonly string[] Generators = { "ingp", "hyper-ingp" };
    static readonly string[] Distillers = { "sds", "csd", "vsd", "asd", "ism" };

    readonly List<IDisposable> _owned = new();

    Session(PromptLibrary library, RunSettings settings, string directory, bool amortized)
    {
        Library = library;
        Settings = settings;
        Directory = directory;
        Amortized = amortized;
        var gen = settings.Generator.ToLowerInvariant();
        if (!Generators.Contains(gen)) throw new CliException($"--generator '{settings.Generator}' is unknown; use one of: {string.Join(", ", Generators)}.");
        var dist = settings.Distiller.ToLowerInvariant();
        if (!Distillers.Contains(dist)) throw new CliException($"--distiller '{settings.Distiller}' is unknown; use one of: {string.Join(", ", Distillers)}.");
        if (settings.Steps is < 1) throw new CliException($"--steps must be at least 1, got {settings.Steps}.");
        Device = ResolveDevice(settings.Prior.Device);
        DType = ResolveDType(settings.Prior, Device);
        if (amortized && gen == "ingp")
            throw new CliException("--generator ingp is prompt-specific (it ignores the text); amortized training needs hyper-ingp.");

        Prior = CreatePrior(settings.Prior, Device, DType, library.Train.Concat(library.Test).Distinct().ToArray());
        _owned.Add(Prior);
        var recipe = ForPrior(Recipes.For(gen, amortized, settings.Steps, settings.Seed, Device), Prior);
        Recipe = recipe;
        using var g = new Generator((ulong)settings.Seed, CPU);
        int textDims;
        using (var probe = Prior.EncodeText(new[] { "" })) textDims = (int)probe.Pooled.shape[1];
        Generator3D = recipe.CreateGenerator(textDims, g);
        Generator3D.Module.to(Device);
        _owned.Add(Generator3D);
        Renderer = new VolumeRenderer(recipe.Renderer);
        Background = new SolidColorBackground(1, 1, 1);
        Distiller = CreateDistiller(dist, Prior, settings.Seed, recipe);
        Trainer = new Trainer(Generator3D, Distiller, Renderer, library, recipe.Trainer with { OutputDirectory = directory }, Background);
        _owned.Add(Trainer);
        Trainer.CheckpointMetadata["cli.settings"] = JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["generator"] = gen,
            ["distiller"] = dist,
            ["steps"] = Recipe.Trainer.Steps.ToString(CultureInfo.InvariantCulture),
            ["seed"] = settings.Seed.ToString(CultureInfo.InvariantCulture),
            ["amortized"] = amortized.ToString(),
            ["model"] = settings.Prior.Model is null ? "" : Path.GetFullPath(settings.Prior.Model),
            ["mvdream"] = settings.Prior.MvDream is null ? "" : Path.GetFullPath(settings.Prior.MvDream),
            ["device"] = settings.Prior.Device,
            ["dtype"] = DTypeName(DType),
            ["builtin"] = settings.Prior.BuiltIn,
        });
        if (Prior is BuiltInPrior builtin)
        {
            // Render the reference views now, outside any training-step dispose scope.
            var sw = Stopwatch.StartNew();
            AnsiConsole.Status().Start("rendering the built-in world's reference views…", ctx =>
            {
                builtin.Library.Prefetch(library.Train.Concat(library.Val).Concat(library.Test).Where(p => WorldObject.TryParse(p, out _)).Distinct());
                var unconditional = builtin.Library.Unconditional;
            });
            AnsiConsole.MarkupLineInterpolated($"[grey]reference views ready in {sw.Elapsed.TotalSeconds:F1} s[/]");
            Trainer.Evaluator = t => Evaluate(t, builtin, Library.Val.Take(4).ToArray(), null);
        }
    }

    public PromptLibrary Library { get; }
    public RunSettings Settings { get; }
    public string Directory { get; }
    public bool Amortized { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    public Recipe Recipe { get; }
    public IDiffusionPrior Prior { get; }
    public I3DGenerator Generator3D { get; }
    public IScoreDistiller Distiller { get; }
    public VolumeRenderer Renderer { get; }
    public IBackground Background { get; }
    public Trainer Trainer { get; }

    public static Session Create(PromptLibrary library, RunSettings settings, string directory, bool amortized) =>
        new(library, settings, directory, amortized);

    /// <summary>
    /// Rebuilds the session a checkpoint came from (generator, distiller and the prior it was trained with) and loads its
    /// weights. <paramref name="device"/> overrides the device recorded in the checkpoint.
    /// </summary>
    public static Session FromCheckpoint(string path, string? device = null)
    {
        if (System.IO.Directory.Exists(path))
        {
            var store = new CheckpointStore(Path.Combine(path, "checkpoints"));
            path = store.List().FirstOrDefault() ?? new CheckpointStore(path).List().FirstOrDefault()
                ?? throw new CliException($"No checkpoint (step-*.sdckpt) found in '{path}' or its 'checkpoints' folder.");
        }
        using var ck = Checkpoint.Load(path);
        if (!ck.Metadata.TryGetValue("cli.settings", out var json))
            throw new CliException($"Checkpoint '{path}' was not written by sd (no cli.settings metadata); build the generator yourself and use Checkpoint.LoadModule.");
        var s = JsonSerializer.Deserialize<Dictionary<string, string>>(json)!;
        var prompts = JsonSerializer.Deserialize<string[]>(ck.Metadata["train_prompts"])!;
        var lib = new PromptLibrary(prompts, prompts, prompts, path);
        static string? Opt(Dictionary<string, string> d, string key) => d.TryGetValue(key, out var v) && v.Length > 0 ? v : null;
        var prior = new PriorChoice(Opt(s, "model"), Opt(s, "mvdream"), device ?? Opt(s, "device") ?? "cpu", Opt(s, "dtype") ?? "float32",
            Opt(s, "builtin") ?? "view-agnostic");
        if (device is not null && !device.Trim().StartsWith("cuda", StringComparison.OrdinalIgnoreCase)) prior = prior with { DType = "float32" };
        var settings = new RunSettings(s["generator"], s["distiller"], int.Parse(s["steps"], CultureInfo.InvariantCulture), long.Parse(s["seed"], CultureInfo.InvariantCulture), prior);
        var session = new Session(lib, settings, Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(path))!)!, bool.Parse(s["amortized"]));
        session.Trainer.RestoreWeights(ck);
        return session;
    }

    /// <summary>Resumes from the newest valid checkpoint of the output folder.</summary>
    public bool TryResume(out string message)
    {
        var store = new CheckpointStore(Path.Combine(Directory, "checkpoints"));
        using var ck = store.LoadLatest(out var rejected);
        var notes = rejected.Count > 0 ? $" (skipped damaged: {string.Join("; ", rejected)})" : "";
        if (ck is null)
        {
            message = $"--resume: no usable checkpoint in '{store.Directory}'{notes}.";
            return false;
        }
        Trainer.Restore(ck, store.PathFor(ck.Step));
        message = $"resumed at step {ck.Step}{notes}";
        return true;
    }

    public string Describe() =>
        $"{Settings.Generator} + {Distiller.Name} + {Prior.ModelId.Split(';')[0]}, {Trainer.Options.Steps} steps at {Trainer.Options.RenderSize}², seed {Settings.Seed}, {Device}{(Prior is BuiltInPrior ? "" : " " + DTypeName(DType))}";

    public void TrainWithProgress(CancellationToken ct)
    {
        var o = Trainer.Options;
        if (Trainer.Step >= o.Steps) return;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: o.Steps);
                task.Value = Trainer.Step;
                var progress = new Progress(s =>
                {
                    task.Value = s.Step;
                    var iou = s.Evaluation.TryGetValue("iou", out var v) ? string.Create(CultureInfo.InvariantCulture, $" IoU {v:F3}") : "";
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"step {s.Step}/{s.TotalSteps} loss {s.Loss:F4}{iou}");
                });
                Trainer.Train(ct, progress);
            });
    }

    /// <summary>Synchronous IProgress (System.Progress posts to the thread pool).</summary>
    sealed class Progress(Action<TrainingStep> report) : IProgress<TrainingStep>
    {
        public void Report(TrainingStep value) => report(value);
    }

    public void WriteTurntable(string prompt, string dir, int views, int size)
    {
        using var scope = NewDisposeScope();
        var frames = Trainer.RenderOrbit(prompt, views, size);
        ImageWriter.SaveTurntable(frames, Path.Combine(dir, "frames"), Path.Combine(dir, "turntable.png"), columns: Math.Min(views, 8));
    }

    public Mesh WriteMesh(string prompt, string dir, int resolution)
    {
        var mesh = Trainer.ExtractMesh(prompt, resolution, extent: Recipe.MeshExtent, densityThreshold: Recipe.DensityThreshold);
        if (mesh.IsEmpty) throw new InvalidOperationException($"The field of '{prompt}' has no surface inside [−{Recipe.MeshExtent}, {Recipe.MeshExtent}]³; nothing to export.");
        System.IO.Directory.CreateDirectory(dir);
        MeshWriter.WriteGlb(mesh, Path.Combine(dir, "mesh.glb"));
        MeshWriter.WritePly(mesh, Path.Combine(dir, "mesh.ply"));
        return mesh;
    }

    /// <summary>Writes everything a person wants to see after a one-prompt run and returns the metrics.</summary>
    public Dictionary<string, object?> Finish(string prompt, TimeSpan elapsed)
    {
        WriteTurntable(prompt, Directory, 12, 64);
        int triangles = 0;
        try { triangles = WriteMesh(prompt, Directory, 64).TriangleCount; }
        catch (InvalidOperationException e) { AnsiConsole.MarkupLineInterpolated($"[yellow]{e.Message}[/]"); }
        var metrics = new Dictionary<string, object?>
        {
            ["prompt"] = prompt,
            ["generator"] = Settings.Generator,
            ["distiller"] = Distiller.Name,
            ["prior"] = Prior.ModelId,
            ["steps"] = Trainer.Step,
            ["seconds"] = Math.Round(elapsed.TotalSeconds, 1),
            ["seconds_per_step"] = Trainer.History.Count > 0 ? Math.Round(Trainer.History.Average(h => h.Seconds), 4) : null,
            ["final_loss"] = Trainer.History.Count > 0 ? Trainer.History.TakeLast(Math.Min(50, Trainer.History.Count)).Average(h => h.DistillationLoss) : null,
            ["triangles"] = triangles,
        };
        if (Prior is BuiltInPrior b && WorldObject.TryParse(prompt, out _))
            foreach (var (k, v) in Evaluate(Trainer, b, new[] { prompt }, null)) metrics[k] = v;
        if (Trainer.History.Count > 0) TrainingReport.WriteCurves(Path.Combine(Directory, "curves.png"), Trainer.History);
        TrainingReport.WriteMetrics(Path.Combine(Directory, "metrics.json"), metrics);
        return metrics;
    }

    public Dictionary<string, object?> FinishAmortized(TimeSpan elapsed)
    {
        var shown = Library.Test.Take(8).ToArray();
        foreach (var p in shown) WriteTurntable(p, Path.Combine(Directory, "test", Commands.Slug(p)), 12, 96);
        var metrics = new Dictionary<string, object?>
        {
            ["train_prompts"] = Library.Train.Count,
            ["generator"] = Settings.Generator,
            ["distiller"] = Distiller.Name,
            ["steps"] = Trainer.Step,
            ["seconds"] = Math.Round(elapsed.TotalSeconds, 1),
        };
        if (Prior is BuiltInPrior b)
        {
            var known = Library.Test.Where(p => WorldObject.TryParse(p, out _)).Distinct().Take(16).ToArray();
            if (known.Length > 0) foreach (var (k, v) in Evaluate(Trainer, b, known, null)) metrics[k] = v;
        }
        if (Trainer.History.Count > 0) TrainingReport.WriteCurves(Path.Combine(Directory, "curves.png"), Trainer.History);
        TrainingReport.WriteMetrics(Path.Combine(Directory, "metrics.json"), metrics);
        return metrics;
    }

    /// <summary>IoU, colour error and R@1 of the built-in world for <paramref name="prompts"/> (those the world knows).</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(Trainer trainer, BuiltInPrior prior, IReadOnlyList<string> prompts, IReadOnlyList<string>? candidates)
    {
        var known = prompts.Where(p => WorldObject.TryParse(p, out _)).ToArray();
        if (known.Length == 0) return new Dictionary<string, double>();
        using var scope = NewDisposeScope();
        var objects = known.Select(p => WorldObject.Parse(p)).ToArray();
        var field = trainer.FieldFor(known);
        var iou = WorldMetrics.OccupancyIoU(field, objects, resolution: 64, densityThreshold: Recipes.DefaultDensityThreshold);
        var col = WorldMetrics.SurfaceColourError(field, objects, points: 2048);
        var result = new Dictionary<string, double> { ["iou"] = iou.Average(), ["colour_error"] = col.Average() };
        var pool = (candidates ?? known).ToArray();
        if (pool.Length > 1)
        {
            var images = cat(known.Select(p => trainer.RenderOrbit(p, 4, prior.ImageSize)).ToArray(), 0);
            var truth = known.SelectMany(p => Enumerable.Repeat(p, 4)).ToArray();
            result["r_at_1"] = WorldMetrics.RetrievalAtOne(images, truth, pool, prior.Library).RecallAtOne;
        }
        return result;
    }

    static Device ResolveDevice(string device)
    {
        var d = device.Trim().ToLowerInvariant();
        if (d == "cpu")
        {
            // LibTorch 2.10's oneDNN convolution backward intermittently returns NaN on CPU (see LibTorchCpu).
            ScoreDistillation.Platform.LibTorchCpu.TryDisableOneDnn();
            return CPU;
        }
        if (d.StartsWith("cuda", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new CliException($"--device {device}: CUDA is not available (this build uses the CPU LibTorch backend or no GPU is visible). Rebuild with -p:TorchBackend=cuda-linux on a machine with an NVIDIA GPU.");
            return new Device(d);
        }
        throw new CliException($"--device '{device}' is unknown; use cpu or cuda[:index].");
    }

    internal static ScalarType ResolveDType(PriorChoice choice, Device device)
    {
        var dtype = choice.DType.Trim().ToLowerInvariant() switch
        {
            "float32" or "fp32" or "float" => ScalarType.Float32,
            "float16" or "fp16" or "half" => ScalarType.Float16,
            "bfloat16" or "bf16" => ScalarType.BFloat16,
            _ => throw new CliException($"--dtype '{choice.DType}' is unknown; use float32, float16 or bfloat16."),
        };
        if (dtype == ScalarType.Float32) return dtype;
        if (device.type != DeviceType.CUDA)
            throw new CliException($"--dtype {choice.DType} needs --device cuda: half precision is only supported on a GPU; use --dtype float32 on the CPU.");
        if (choice.Model is null && choice.MvDream is null)
            throw new CliException($"--dtype {choice.DType} applies to the --model / --mvdream priors only; the built-in prior runs in float32.");
        return dtype;
    }

    internal static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        _ => "float32",
    };

    /// <summary>Builds the prior the user chose: Stable Diffusion (<c>--model</c>), MVDream (<c>--mvdream</c> + <c>--model</c>) or the built-in one.</summary>
    internal static IDiffusionPrior CreatePrior(PriorChoice choice, Device device, ScalarType dtype, IReadOnlyList<string> prompts)
    {
        if (choice.MvDream is not null)
        {
            if (choice.Model is null)
                throw new CliException("--mvdream needs --model <folder>: a Stable Diffusion 2.1-base diffusers folder whose text_encoder and tokenizer MVDream uses.");
            return MVDreamPrior.FromCheckpoint(choice.MvDream, choice.Model, new MVDreamPriorOptions { Device = device, DType = dtype });
        }
        if (choice.Model is not null)
            return StableDiffusionPrior.FromPretrained(choice.Model, new StableDiffusionPriorOptions { Device = device, DType = dtype });
        return new BuiltInPrior(Recipes.BuiltInPrior(device, prompts, choice.BuiltIn));
    }

    /// <summary>
    /// Adapts a built-in-prior recipe to a real prior: renders at min(64, prior size) (upsampled by the prior, as threestudio
    /// does), the reference distiller presets, and MVDream's 4-view camera sampler.
    /// </summary>
    internal static Recipe ForPrior(Recipe recipe, IDiffusionPrior prior)
    {
        if (prior is BuiltInPrior builtIn)
        {
            // Cameras carry no intrinsics: train at the field of view the posed prior renders its references with.
            // With posed references the conditional is exact and the classifier-free term only pushes renders away from
            // the unconditional mixture, over-saturating them (docs/results.md); see Recipes.PosedGuidanceScale.
            return builtIn.Options.PosedFovY is { } fov
                ? recipe with
                {
                    Trainer = recipe.Trainer with { Cameras = recipe.Trainer.Cameras with { FovY = (fov, fov) } },
                    Sds = recipe.Sds with { Guidance = recipe.Sds.Guidance with { GuidanceScale = Recipes.PosedGuidanceScale } },
                    Vsd = recipe.Vsd with { Guidance = recipe.Vsd.Guidance with { GuidanceScale = Recipes.PosedGuidanceScale } },
                    Asd = recipe.Asd with { Guidance = recipe.Asd.Guidance with { GuidanceScale = Recipes.PosedGuidanceScale } },
                }
                : recipe;
        }
        var trainer = recipe.Trainer with { RenderSize = Math.Min(64, prior.ImageSize) };
        if (prior is MVDreamPrior)
            return recipe with
            {
                Trainer = trainer with { Cameras = CameraSamplerOptions.MultiView },
                Asd = AsdOptions.ScaleDreamerMVDream,
            };
        return recipe with
        {
            Trainer = trainer,
            Sds = SdsOptions.Threestudio,
            Csd = CsdOptions.Default,
            Vsd = VsdOptions.ProlificDreamer,
            Asd = AsdOptions.ScaleDreamerStableDiffusion,
            Ism = IsmOptions.LucidDreamer,
        };
    }

    /// <summary>
    /// The distiller for a prior: MVDream's SDS (x0 reconstruction, 4-view layout) for <c>sds</c> on MVDream; VSD's particle
    /// model is a LoRA copy of the Stable Diffusion UNet on SD and the recipe's small camera-conditioned network otherwise.
    /// </summary>
    internal static IScoreDistiller CreateDistiller(string name, IDiffusionPrior prior, long seed, Recipe recipe)
    {
        var g = new Generator((ulong)(seed + 1), CPU);
        return name switch
        {
            "sds" when prior is MVDreamPrior => new MVDreamSdsDistiller(prior, new MVDreamSdsOptions(), g),
            "sds" => new SdsDistiller(prior, recipe.Sds, g),
            "csd" => new CsdDistiller(prior, recipe.Csd, g),
            "asd" => new AsdDistiller(prior, recipe.Asd, g),
            "ism" => new IsmDistiller(prior, recipe.Ism, g),
            "vsd" when prior is StableDiffusionPrior sd => new VsdDistiller(prior, StableDiffusionParticleModel.FromPrior(sd), recipe.Vsd, g),
            "vsd" => new VsdDistiller(prior, recipe.CreateParticle(prior, g), recipe.Vsd, g),
            _ => throw new CliException($"--distiller '{name}' is unknown."),
        };
    }

    public void Dispose()
    {
        if (Distiller is IDisposable d) d.Dispose();
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
    }
}
