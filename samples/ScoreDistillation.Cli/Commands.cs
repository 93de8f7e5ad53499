using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using ScoreDistillation.Outputs;
using ScoreDistillation.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Cli;

/// <summary>The sub-commands.</summary>
static class Commands
{
    static Option<string> GeneratorOption(string dflt) => new("--generator", "-g")
    {
        Description = "3D generator: ingp (prompt-specific Instant-NGP) or hyper-ingp (text-conditioned Hyper-iNGP).",
        DefaultValueFactory = _ => dflt,
    };

    static Option<string> DistillerOption() => new("--distiller", "-d")
    {
        Description = "Score distillation method: sds, csd, vsd, asd or ism.",
        DefaultValueFactory = _ => "asd",
    };

    static Option<int?> StepsOption() => new("--steps", "-n") { Description = "Optimizer steps (default: the command's CPU recipe)." };
    static Option<long> SeedOption() => new("--seed", "-s") { Description = "Random seed.", DefaultValueFactory = _ => 0 };
    static Option<string> OutOption(string dflt) => new("--out", "-o") { Description = "Output folder.", DefaultValueFactory = _ => dflt };
    static Option<string?> ModelOption() => new("--model") { Description = "A diffusers Stable Diffusion folder to use as the prior instead of the built-in one (with --mvdream: the SD 2.1-base folder for its text encoder)." };
    static Option<string?> MvDreamOption() => new("--mvdream") { Description = "An MVDream checkpoint (.ckpt/.safetensors) to use as the prior; needs --model <SD 2.1-base folder>." };
    internal static Option<string> DeviceOption() => new("--device") { Description = "cpu or cuda[:index].", DefaultValueFactory = _ => "cpu" };
    static Option<string> DTypeOption() => new("--dtype") { Description = "Weights of the --model/--mvdream prior: float32, or float16/bfloat16 on CUDA.", DefaultValueFactory = _ => "float32" };

    internal static Option<string> BuiltInOption() => new("--builtin-prior")
    {
        Description = "Variant of the built-in prior: view-agnostic (like Stable Diffusion, the default), camera-aware (references weighted by view direction) or posed (camera-conditioned: the exact view at each training camera).",
        DefaultValueFactory = _ => Recipes.DefaultBuiltInMode,
    };

    static PriorChoice Prior(ParseResult r, Option<string?> model, Option<string?> mv, Option<string> device, Option<string> dtype, Option<string>? builtIn = null) =>
        new(r.GetValue(model), r.GetValue(mv), r.GetValue(device)!, r.GetValue(dtype)!, builtIn is null ? Recipes.DefaultBuiltInMode : r.GetValue(builtIn)!);

    public static Command Generate()
    {
        var prompt = new Argument<string>("prompt") { Description = "What to make, e.g. \"a red cube\"." };
        var gen = GeneratorOption("ingp");
        var dist = DistillerOption();
        var steps = StepsOption();
        var seed = SeedOption();
        var outDir = OutOption("out");
        var model = ModelOption();
        var mv = MvDreamOption();
        var device = DeviceOption();
        var dtype = DTypeOption();
        var builtIn = BuiltInOption();
        var cmd = new Command("generate", "Text to a 3D object: trains one prompt, then writes a turntable, a mesh (GLB + PLY), metrics and curves.")
        {
            prompt, gen, dist, steps, seed, outDir, model, mv, device, dtype, builtIn,
        };
        cmd.SetAction((r, ct) =>
        {
            var settings = new RunSettings(r.GetValue(gen)!, r.GetValue(dist)!, r.GetValue(steps), r.GetValue(seed), Prior(r, model, mv, device, dtype, builtIn));
            var p = r.GetValue(prompt)!;
            var dir = Path.Combine(r.GetValue(outDir)!, Slug(p));
            return Task.FromResult(RunGenerate(p, settings, dir, ct));
        });
        return cmd;
    }

    public static Command Train()
    {
        var prompts = new Option<string>("--prompts", "-p") { Description = "Prompt library JSON ({\"train\": [...], \"val\": [...], \"test\": [...]}).", Required = true };
        var gen = GeneratorOption("hyper-ingp");
        var dist = DistillerOption();
        var steps = StepsOption();
        var seed = SeedOption();
        var outDir = OutOption("out/train");
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest valid checkpoint in the output folder." };
        var rank = new Option<int>("--rank") { Description = "This process's rank (prompt sharding).", DefaultValueFactory = _ => 0 };
        var world = new Option<int>("--world-size") { Description = "Number of ranks (prompt sharding).", DefaultValueFactory = _ => 1 };
        var model = ModelOption();
        var mv = MvDreamOption();
        var device = DeviceOption();
        var dtype = DTypeOption();
        var builtIn = BuiltInOption();
        var cmd = new Command("train", "Prompt-amortized training on a prompt library.")
        {
            prompts, gen, dist, steps, seed, outDir, resume, rank, world, model, mv, device, dtype, builtIn,
        };
        cmd.SetAction((r, ct) =>
        {
            var settings = new RunSettings(r.GetValue(gen)!, r.GetValue(dist)!, r.GetValue(steps), r.GetValue(seed), Prior(r, model, mv, device, dtype, builtIn));
            var lib = PromptLibrary.Load(r.GetValue(prompts)!).Shard(r.GetValue(rank), r.GetValue(world));
            return Task.FromResult(RunTrain(lib, settings, r.GetValue(outDir)!, r.GetValue(resume), ct));
        });
        return cmd;
    }

    static (Option<string> Ckpt, Option<string[]> Prompt) CheckpointOptions() => (
        new Option<string>("--checkpoint", "-c") { Description = "A checkpoint file (.sdckpt) or a training output folder.", Required = true },
        new Option<string[]>("--prompt", "-p") { Description = "Prompt(s) to render; any text for amortized generators, also unseen prompts.", Required = true, AllowMultipleArgumentsPerToken = true });

    public static Command Render()
    {
        var (ckpt, prompt) = CheckpointOptions();
        var views = new Option<int>("--views") { Description = "Turntable views.", DefaultValueFactory = _ => 24 };
        var size = new Option<int>("--size") { Description = "Image side in pixels.", DefaultValueFactory = _ => 128 };
        var outDir = OutOption("out/render");
        var cmd = new Command("render", "Turntable renders (PNG frames + contact sheet) of prompts from a checkpoint.") { ckpt, prompt, views, size, outDir };
        cmd.SetAction(r =>
        {
            using var session = Session.FromCheckpoint(r.GetValue(ckpt)!);
            foreach (var p in r.GetValue(prompt)!)
            {
                var dir = Path.Combine(r.GetValue(outDir)!, Slug(p));
                session.WriteTurntable(p, dir, r.GetValue(views), r.GetValue(size));
                AnsiConsole.MarkupLineInterpolated($"[green]rendered[/] {p} → {Path.Combine(dir, "turntable.png")}");
            }
            return 0;
        });
        return cmd;
    }

    public static Command Export()
    {
        var (ckpt, prompt) = CheckpointOptions();
        var res = new Option<int>("--resolution") { Description = "Grid points per axis for the iso-surface.", DefaultValueFactory = _ => 128 };
        var outDir = OutOption("out/export");
        var cmd = new Command("export", "Meshes (GLB + PLY with vertex colours) of prompts from a checkpoint.") { ckpt, prompt, res, outDir };
        cmd.SetAction(r =>
        {
            using var session = Session.FromCheckpoint(r.GetValue(ckpt)!);
            foreach (var p in r.GetValue(prompt)!)
            {
                var dir = Path.Combine(r.GetValue(outDir)!, Slug(p));
                if (session.Prior is Diffusion.BuiltIn.BuiltInPrior b)
                    foreach (var (k, v) in Session.Evaluate(session.Trainer, b, new[] { p }, null)) AnsiConsole.MarkupLineInterpolated($"  {k}: {Format(v)}");
                var mesh = session.WriteMesh(p, dir, r.GetValue(res));
                AnsiConsole.MarkupLineInterpolated($"[green]exported[/] {p}: {mesh.TriangleCount} triangles → {Path.Combine(dir, "mesh.glb")}");
            }
            return 0;
        });
        return cmd;
    }

    public static Command Compare()
    {
        var prompts = new Option<string[]>("--prompt", "-p")
        {
            Description = "Prompts to compare on (default: a red cube, a blue sphere, a green cone, a yellow torus).",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => new[] { "a red cube", "a blue sphere", "a green cone", "a yellow torus" },
        };
        var methods = new Option<string[]>("--distillers") { Description = "Methods to compare.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => new[] { "sds", "csd", "vsd", "asd", "ism" } };
        var gen = GeneratorOption("ingp");
        var steps = StepsOption();
        var seed = SeedOption();
        var outDir = OutOption("out/compare");
        var builtIn = BuiltInOption();
        var cmd = new Command("compare", "Same budget, seed and generator for several distillers; prints a Markdown table of IoU, colour error, R@1 and time per step.")
        {
            prompts, methods, gen, steps, seed, outDir, builtIn,
        };
        cmd.SetAction((r, ct) =>
        {
            var table = Comparison.Run(r.GetValue(prompts)!, r.GetValue(methods)!, r.GetValue(gen)!, r.GetValue(steps), r.GetValue(seed), r.GetValue(outDir)!, r.GetValue(builtIn)!, ct);
            Console.Out.Write(table);
            return Task.FromResult(0);
        });
        return cmd;
    }

    internal static string Slug(string prompt)
    {
        var sb = new StringBuilder();
        foreach (var c in prompt.Trim().ToLowerInvariant())
            sb.Append(char.IsLetterOrDigit(c) ? c : (c == ' ' || c == '-' ? '_' : '\0'));
        var s = sb.ToString().Replace("\0", "", StringComparison.Ordinal);
        return s.Length == 0 ? "prompt" : s.Length > 80 ? s[..80] : s;
    }

    static int RunGenerate(string prompt, RunSettings settings, string dir, CancellationToken ct)
    {
        using var session = Session.Create(PromptLibrary.Single(prompt), settings, dir, amortized: false);
        AnsiConsole.MarkupLineInterpolated($"[bold]{prompt}[/]: {session.Describe()}");
        var sw = Stopwatch.StartNew();
        session.TrainWithProgress(ct);
        var metrics = session.Finish(prompt, sw.Elapsed);
        AnsiConsole.MarkupLineInterpolated($"[green]done[/] in {sw.Elapsed.TotalSeconds:F0} s → {dir}");
        foreach (var (k, v) in metrics) AnsiConsole.MarkupLineInterpolated($"  {k}: {Format(v)}");
        return 0;
    }

    static int RunTrain(PromptLibrary lib, RunSettings settings, string dir, bool resume, CancellationToken ct)
    {
        using var session = Session.Create(lib, settings, dir, amortized: true);
        if (resume)
        {
            if (!session.TryResume(out var message)) throw new CliException(message);
            AnsiConsole.MarkupLineInterpolated($"[yellow]{message}[/]");
        }
        AnsiConsole.MarkupLineInterpolated($"[bold]{lib.Train.Count} training prompts[/] from {lib.Source}: {session.Describe()}");
        var sw = Stopwatch.StartNew();
        session.TrainWithProgress(ct);
        var metrics = session.FinishAmortized(sw.Elapsed);
        AnsiConsole.MarkupLineInterpolated($"[green]done[/] → {dir}");
        foreach (var (k, v) in metrics) AnsiConsole.MarkupLineInterpolated($"  {k}: {Format(v)}");
        return 0;
    }

    internal static string Format(object? v) => v switch
    {
        double d => d.ToString("G4", CultureInfo.InvariantCulture),
        null => "",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };
}
