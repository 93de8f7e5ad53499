using System.Diagnostics;
using System.Globalization;
using System.Text;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Training;
using Spectre.Console;

namespace ScoreDistillation.Cli;

/// <summary>The <c>compare</c> command: one budget, seed and generator; one row per distiller.</summary>
static class Comparison
{
    public static string Run(IReadOnlyList<string> prompts, IReadOnlyList<string> methods, string generator, int? steps, long seed, string outDir, string builtIn, CancellationToken ct)
    {
        foreach (var p in prompts)
            if (!WorldObject.TryParse(p, out _)) throw new CliException($"--prompt '{p}' is not in the built-in world ({WorldVocabulary.Describe()}); compare needs ground truth.");
        var rows = new List<(string Method, double Iou, double Colour, double R1, double SecondsPerStep, int Steps)>();
        foreach (var m in methods)
        {
            ct.ThrowIfCancellationRequested();
            var ious = new List<double>();
            var cols = new List<double>();
            var secs = new List<double>();
            var images = new List<(string Prompt, TorchSharp.torch.Tensor Frames)>();
            int usedSteps = 0;
            double r1 = double.NaN;
            var fields = new List<(Session S, string P)>();
            var sessions = new List<Session>();
            try
            {
                foreach (var p in prompts)
                {
                    var dir = Path.Combine(outDir, m.ToLowerInvariant(), Commands.Slug(p));
                    var s = Session.Create(PromptLibrary.Single(p), new RunSettings(generator, m, steps, seed, new PriorChoice(null, null, "cpu", BuiltIn: builtIn)), dir, amortized: false);
                    sessions.Add(s);
                    AnsiConsole.MarkupLineInterpolated($"[bold]{m.ToUpperInvariant()}[/] · {p}");
                    var sw = Stopwatch.StartNew();
                    s.TrainWithProgress(ct);
                    secs.Add(sw.Elapsed.TotalSeconds / s.Trainer.Step);
                    usedSteps = s.Trainer.Step;
                    var metrics = Session.Evaluate(s.Trainer, (BuiltInPrior)s.Prior, new[] { p }, null);
                    ious.Add(metrics["iou"]);
                    cols.Add(metrics["colour_error"]);
                    s.WriteTurntable(p, dir, 8, 64);
                }
                // R@1 over the compared prompt set: each prompt's views against all compared prompts.
                if (prompts.Count > 1)
                {
                    using var scope = TorchSharp.torch.NewDisposeScope();
                    var prior = (BuiltInPrior)sessions[0].Prior;
                    var imgs = TorchSharp.torch.cat(sessions.Select((s, i) => s.Trainer.RenderOrbit(prompts[i], 4, prior.ImageSize)).ToArray(), 0);
                    var truth = prompts.SelectMany(p => Enumerable.Repeat(p, 4)).ToArray();
                    r1 = WorldMetrics.RetrievalAtOne(imgs, truth, prompts, prior.Library).RecallAtOne;
                }
            }
            finally
            {
                foreach (var s in sessions) s.Dispose();
            }
            rows.Add((m.ToUpperInvariant(), ious.Average(), cols.Average(), r1, secs.Average(), usedSteps));
        }
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine(inv, $"Settings: generator {generator}, {rows.FirstOrDefault().Steps} steps per prompt, seed {seed}, prompts: {string.Join("; ", prompts)}, {builtIn} built-in prior at {Recipes.ImageSize}², CPU.");
        sb.AppendLine();
        sb.AppendLine("| method | IoU ↑ | colour error ↓ | R@1 ↑ | s/step |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var r in rows)
            sb.AppendLine(inv, $"| {r.Method} | {r.Iou:F3} | {r.Colour:F3} | {(double.IsNaN(r.R1) ? "–" : r.R1.ToString("F2", inv))} | {r.SecondsPerStep:F3} |");
        return sb.ToString();
    }
}
