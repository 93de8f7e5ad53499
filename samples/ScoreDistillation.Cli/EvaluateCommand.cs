using System.CommandLine;
using System.Globalization;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Evaluation;
using ScoreDistillation.Outputs;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace ScoreDistillation.Cli;

/// <summary>
/// The <c>evaluate</c> command: the paper's test protocol. Renders the reference test orbit (elevation 15°, azimuth
/// linspace(0, 360, n) with both ends) of every prompt of a split from a checkpoint, saves the PNGs in the reference
/// folder layout, and scores them with CLIP (similarity and R@1) and, for the built-in prior, the built-in world metrics.
/// </summary>
static class EvaluateCommand
{
    /// <summary>Views rendered per call, so a 120 × 512² orbit never sits in memory at once.</summary>
    const int ViewsPerChunk = 8;

    public static Command Create()
    {
        var ckpt = new Option<string>("--checkpoint", "-c") { Description = "A checkpoint file (.sdckpt) or a training output folder.", Required = true };
        var prompts = new Option<string>("--prompts", "-p") { Description = "Prompt library JSON ({\"train\": [...], \"val\": [...], \"test\": [...]}).", Required = true };
        var split = new Option<string>("--split") { Description = "Which split of the library to evaluate: train, val or test.", DefaultValueFactory = _ => "test" };
        var clip = new Option<string?>("--clip") { Description = "A Hugging Face CLIP model folder (e.g. clip-vit-large-patch14) for CLIP similarity and R@1." };
        var views = new Option<int>("--views") { Description = "Views of the test orbit per prompt (the paper: 120).", DefaultValueFactory = _ => 120 };
        var size = new Option<int>("--size") { Description = "Image side in pixels.", DefaultValueFactory = _ => 512 };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder.", DefaultValueFactory = _ => "out/evaluate" };
        var device = Commands.DeviceOption();
        device.DefaultValueFactory = null;
        device.Description = "cpu or cuda[:index] (default: the device recorded in the checkpoint).";
        var cmd = new Command("evaluate", "Renders the test orbit of every prompt of a split from a checkpoint and writes CLIP similarity / R@1 (JSON + Markdown) and the built-in metrics.")
        {
            ckpt, prompts, split, clip, views, size, outDir, device,
        };
        cmd.SetAction((r, ct) => Task.FromResult(Run(r.GetValue(ckpt)!, r.GetValue(prompts)!, r.GetValue(split)!, r.GetValue(clip), r.GetValue(views),
            r.GetValue(size), r.GetValue(outDir)!, r.GetValue(device), ct)));
        return cmd;
    }

    static PromptSplit ParseSplit(string split) => split.Trim().ToLowerInvariant() switch
    {
        "train" => PromptSplit.Train,
        "val" or "validation" => PromptSplit.Val,
        "test" => PromptSplit.Test,
        _ => throw new CliException($"--split '{split}' is unknown; use train, val or test."),
    };

    internal static int Run(string checkpoint, string promptFile, string splitName, string? clipFolder, int views, int size, string outDir, string? device, CancellationToken ct)
    {
        if (views < 1) throw new CliException($"--views must be at least 1, got {views}.");
        if (size < 8) throw new CliException($"--size must be at least 8, got {size}.");
        if (clipFolder is not null && !Directory.Exists(clipFolder)) throw new CliException($"--clip '{clipFolder}': folder not found.");
        var split = ParseSplit(splitName);
        var library = PromptLibrary.Load(promptFile);
        var prompts = library[split].Distinct().ToArray();
        if (prompts.Length == 0) throw new CliException($"--split {splitName}: the '{splitName}' list of {promptFile} is empty.");

        var renders = Path.Combine(outDir, "renders");
        var folders = prompts.Select(ClipMetrics.FolderName).ToArray();
        if (Directory.Exists(renders))
        {
            // The CLIP evaluation scores every prompt folder it finds; images of another prompt set would skew R@1.
            var stale = Directory.GetDirectories(renders).Select(Path.GetFileName).Where(n => !folders.Contains(n, StringComparer.Ordinal)).ToArray();
            if (stale.Length > 0)
                throw new CliException($"--out '{outDir}': '{renders}' holds renders of other prompts ({string.Join(", ", stale.Take(3))}{(stale.Length > 3 ? ", …" : "")}); use an empty --out folder.");
        }

        using var session = Session.FromCheckpoint(checkpoint, device);
        AnsiConsole.MarkupLineInterpolated($"[bold]evaluate[/] {prompts.Length} {splitName} prompts × {views} views at {size}² from {checkpoint}: {session.Describe()}");
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("rendering", maxValue: prompts.Length * (double)views);
                for (int i = 0; i < prompts.Length; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    task.Description = $"rendering {i + 1}/{prompts.Length}";
                    RenderTestOrbit(session.Trainer, prompts[i], views, size, Path.Combine(renders, folders[i]), ct, n => task.Increment(n));
                }
            });

        var metrics = new Dictionary<string, object?>
        {
            ["checkpoint"] = Path.GetFullPath(checkpoint),
            ["prompts_file"] = Path.GetFullPath(promptFile),
            ["split"] = split.ToString().ToLowerInvariant(),
            ["prompts"] = prompts.Length,
            ["views"] = views,
            ["size"] = size,
            ["prior"] = session.Prior.ModelId,
            ["generator"] = session.Settings.Generator,
            ["distiller"] = session.Distiller.Name,
            ["steps"] = session.Trainer.Step,
        };
        if (clipFolder is not null)
        {
            using var embedder = ClipEmbedder.FromPretrained(clipFolder, device: session.Device);
            var result = new ClipEvaluator(embedder).EvaluateFolder(renders);
            ClipEvaluator.WriteReports(result, outDir, $"CLIP evaluation of {Path.GetFileName(checkpoint)} ({splitName}, {views} views)");
            metrics["clip_model"] = Path.GetFullPath(clipFolder);
            metrics["clip_similarity"] = result.Similarity;
            metrics["clip_r_at_1"] = result.RecallAt1;
            AnsiConsole.MarkupLineInterpolated($"  CLIP similarity: {Commands.Format(result.Similarity)}");
            AnsiConsole.MarkupLineInterpolated($"  CLIP R@1: {Commands.Format(result.RecallAt1)} over {result.CandidateCount} candidates → {Path.Combine(outDir, "clip_evaluation.md")}");
        }
        if (session.Prior is BuiltInPrior builtin)
        {
            var known = prompts.Where(p => WorldObject.TryParse(p, out _)).ToArray();
            if (known.Length > 0)
            {
                builtin.Library.Prefetch(known);
                foreach (var (k, v) in Session.Evaluate(session.Trainer, builtin, known, null))
                {
                    metrics["builtin_" + k] = v;
                    AnsiConsole.MarkupLineInterpolated($"  built-in {k}: {Commands.Format(v)}");
                }
                metrics["builtin_prompts"] = known.Length;
            }
        }
        TrainingReport.WriteMetrics(Path.Combine(outDir, "evaluation.json"), metrics);
        AnsiConsole.MarkupLineInterpolated($"[green]evaluated[/] → {Path.Combine(outDir, "evaluation.json")}");
        return 0;
    }

    /// <summary>
    /// Renders <c>Cameras.Orbit(views, closed: true)</c> (the reference test layout, first and last views coincide) in chunks
    /// and saves <c>000.png</c>… quantised as threestudio saves them (uint8 by truncation).
    /// </summary>
    static void RenderTestOrbit(Trainer trainer, string prompt, int views, int size, string dir, CancellationToken ct, Action<int> progress)
    {
        Directory.CreateDirectory(dir);
        var o = trainer.Options;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var text = trainer.TextFor(prompt);
        var field = trainer.FieldFor(new[] { prompt });
        var device = text.Pooled.device;
        using var cams = Cameras.Orbit(views, o.EvaluationElevation, o.EvaluationDistance, o.EvaluationFovY, closed: true, device: device, dtype: o.DType);
        var bg = trainer.Background is RandomSolidColorBackground r ? r.Inner : trainer.Background;
        for (int start = 0; start < views; start += ViewsPerChunk)
        {
            ct.ThrowIfCancellationRequested();
            int n = Math.Min(ViewsPerChunk, views - start);
            using var inner = NewDisposeScope();
            using var chunk = new CameraBatch(cams.CameraToWorld.narrow(0, start, n), cams.FovY.narrow(0, start, n), cams.Elevation.narrow(0, start, n),
                cams.Azimuth.narrow(0, start, n), cams.Distance.narrow(0, start, n));
            using var render = trainer.Renderer.Render(field, chunk, size, size, bg, text.Pooled, null);
            var rgb = (render.Rgb.detach().clamp(0, 1) * 255).floor() / 255;
            for (int i = 0; i < n; i++)
                ImageWriter.SavePng(rgb[i], Path.Combine(dir, (start + i).ToString("D3", CultureInfo.InvariantCulture) + ".png"));
            progress(n);
        }
    }
}
