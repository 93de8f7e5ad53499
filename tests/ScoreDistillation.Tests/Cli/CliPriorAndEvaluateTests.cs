using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Cli;
using ScoreDistillation.Tests.Clip;
using ScoreDistillation.Tests.Diffusion.StableDiffusion;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace ScoreDistillation.Tests.Cli;

/// <summary>The real-prior options (<c>--model</c>) and the <c>evaluate</c> command on tiny models assembled from the test vectors.</summary>
public sealed class CliPriorAndEvaluateTests(ITestOutputHelper output)
{
    (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int code = SdApp.Run(args, o, e);
        output.WriteLine($"sd {string.Join(' ', args)} → {code} in {sw.Elapsed.TotalSeconds:F1} s\n{e}");
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Evaluate_options_are_parsed_with_the_paper_defaults_and_errors_print_usage()
    {
        var cmd = SdApp.Build().Subcommands.Single(c => c.Name == "evaluate");
        var parse = SdApp.Build().Parse(new[] { "evaluate", "-c", "x.sdckpt", "-p", "lib.json" });
        parse.Errors.Should().BeEmpty();
        parse.GetValue<string>("--split").Should().Be("test");
        parse.GetValue<int>("--views").Should().Be(120);
        parse.GetValue<int>("--size").Should().Be(512);
        parse.GetValue<string?>("--clip").Should().BeNull();
        cmd.Options.Select(o => o.Name).Should().Contain(new[] { "--checkpoint", "--prompts", "--split", "--clip", "--views", "--size", "--out", "--device" });

        var (code, _, err) = Run("evaluate", "--prompts", "lib.json");
        code.Should().Be(1);
        err.Should().Contain("--checkpoint").And.Contain("Usage:").And.Contain("evaluate").And.NotContain("   at ");

        var lib = Path.GetTempFileName();
        try
        {
            File.WriteAllText(lib, """{"train": ["a red cube"], "val": [], "test": []}""");
            (code, _, err) = Run("evaluate", "-c", "x.sdckpt", "-p", lib, "--split", "holdout");
            code.Should().Be(1);
            err.Should().Contain("--split 'holdout' is unknown").And.Contain("Usage:").And.NotContain("   at ");
            (code, _, err) = Run("evaluate", "-c", "x.sdckpt", "-p", lib);
            code.Should().Be(1);
            err.Should().Contain("'test' list").And.Contain("is empty").And.NotContain("   at ");
            (code, _, err) = Run("evaluate", "-c", "x.sdckpt", "-p", lib, "--views", "0");
            code.Should().Be(1);
            err.Should().Contain("--views must be at least 1");
            (code, _, err) = Run("evaluate", "-c", "x.sdckpt", "-p", lib, "--clip", "/nonexistent/clip");
            code.Should().Be(1);
            err.Should().Contain("--clip '/nonexistent/clip': folder not found");
        }
        finally { File.Delete(lib); }
    }

    // A full `generate` (train + turntable + mesh + metrics) takes minutes on the shared 2-core machine: Slow. The fast
    // test below checks the same prior / particle-model factories directly.
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("asd", "ASD")]
    [InlineData("vsd", "VSD")]
    public void Model_builds_the_stable_diffusion_prior_and_a_one_step_generate_completes(string distiller, string name)
    {
        var root = Directory.CreateTempSubdirectory("sd-cli-sd-");
        try
        {
            var model = Path.Combine(root.FullName, "model");
            StableDiffusionPriorTests.WriteTinyFolder(model);
            var outDir = Path.Combine(root.FullName, "out");
            var (code, _, err) = Run("generate", "a red cube", "--model", model, "--distiller", distiller, "--steps", "1", "--out", outDir);
            code.Should().Be(0, err);
            var metricsPath = Path.Combine(outDir, "a_red_cube", "metrics.json");
            File.Exists(metricsPath).Should().BeTrue();
            using var doc = JsonDocument.Parse(File.ReadAllText(metricsPath));
            doc.RootElement.GetProperty("prior").GetString().Should().NotContain("built-in", "the --model prior is used");
            doc.RootElement.GetProperty("distiller").GetString().Should().StartWith(name);
            doc.RootElement.GetProperty("steps").GetInt32().Should().Be(1);
            double.IsFinite(doc.RootElement.GetProperty("final_loss").GetDouble()).Should().BeTrue();
        }
        finally { root.Delete(true); }
    }

    [Fact]
    public void Prior_and_distiller_factories_pick_the_stable_diffusion_particle_model()
    {
        using var dir = new Diffusion.Loading.SafetensorsTestFiles.TempDir();
        StableDiffusionPriorTests.WriteTinyFolder(dir.Path);
        using var prior = Session.CreatePrior(new PriorChoice(dir.Path, null, "cpu"), TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32, new[] { "a red cube" });
        prior.Should().BeOfType<ScoreDistillation.Diffusion.StableDiffusion.StableDiffusionPrior>();
        var recipe = Session.ForPrior(Recipes.For("ingp", false, 1, 0, TorchSharp.torch.CPU), prior);
        recipe.Trainer.RenderSize.Should().Be(32, "min(64, the tiny prior's 32² working size)");
        var vsd = (ScoreDistillation.Distillers.VsdDistiller)Session.CreateDistiller("vsd", prior, 0, recipe);
        try
        {
            vsd.Particle.Should().BeOfType<ScoreDistillation.Diffusion.StableDiffusion.StableDiffusionParticleModel>();
        }
        finally { vsd.Dispose(); }
    }

    // ~30 s of it is the evaluate command itself (built-in prior rebuild, IoU grid, CLIP), the rest the 1-step training
    // that makes the checkpoint; 1.5 min on the shared machine, hence Slow.
    [Fact]
    public void MVDream_gets_the_four_view_camera_sampler_and_its_distillers()
    {
        using var tiny = new ScoreDistillation.Tests.MVDream.TinyMVDream();
        var recipe = Session.ForPrior(Recipes.For("hyper-ingp", true, 1, 0, TorchSharp.torch.CPU), tiny.Prior);
        recipe.Trainer.Cameras.ViewsPerSample.Should().Be(4);
        recipe.Trainer.Cameras.Elevation.Should().Be((0.0, 30.0));
        recipe.Trainer.Cameras.RelativeRadius.Should().BeTrue();
        recipe.Trainer.RenderSize.Should().Be(32);
        recipe.Asd.Guidance.ViewDependent.Should().BeNull("MVDream is camera-conditioned, not view-prompted");
        var sds = Session.CreateDistiller("sds", tiny.Prior, 0, recipe);
        sds.Should().BeOfType<ScoreDistillation.Diffusion.MVDream.MVDreamSdsDistiller>();
        Session.CreateDistiller("asd", tiny.Prior, 0, recipe).Should().BeOfType<ScoreDistillation.Distillers.AsdDistiller>();
        (sds as IDisposable)?.Dispose();
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Evaluate_renders_the_test_orbit_and_writes_clip_and_builtin_metrics()
    {
        var root = Directory.CreateTempSubdirectory("sd-cli-eval-");
        string? clip = null;
        try
        {
            // The checkpoint `sd generate "a red cube" --steps 1` writes, without its turntable / mesh / metrics outputs.
            var checkpoint = Path.Combine(root.FullName, "gen", "a_red_cube");
            using (var session = Session.Create(ScoreDistillation.Training.PromptLibrary.Single("a red cube"),
                new RunSettings("ingp", "asd", 1, 0, new PriorChoice(null, null, "cpu")), checkpoint, amortized: false))
                session.Trainer.Train(CancellationToken.None);
            Directory.GetFiles(Path.Combine(checkpoint, "checkpoints"), "*.sdckpt").Should().NotBeEmpty();

            var (tw, _) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_text_proj_tiny.safetensors"));
            var (vw, _) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_vision_tiny.safetensors"));
            clip = ClipTestFolders.CreateFullClip("sd-cli-clip", tw, vw);
            foreach (var t in tw.Values.Concat(vw.Values)) t.Dispose();
            File.Copy(TestVectors.PathOf("clip", "vocab.json"), Path.Combine(clip, "vocab.json"));
            File.Copy(TestVectors.PathOf("clip", "merges.txt"), Path.Combine(clip, "merges.txt"));

            var lib = Path.Combine(root.FullName, "lib.json");
            File.WriteAllText(lib, """{"train": ["a red cube"], "val": [], "test": ["a red cube", "a blue sphere"]}""");
            var evalDir = Path.Combine(root.FullName, "eval");
            var (code, _, err) = Run("evaluate", "-c", checkpoint, "-p", lib, "--clip", clip, "--views", "3", "--size", "32", "--out", evalDir);
            code.Should().Be(0, err);

            Directory.GetFiles(Path.Combine(evalDir, "renders", "a_red_cube"), "*.png").Should().HaveCount(3);
            Directory.GetFiles(Path.Combine(evalDir, "renders", "a_blue_sphere"), "*.png").Should().HaveCount(3);
            File.Exists(Path.Combine(evalDir, "clip_evaluation.md")).Should().BeTrue();
            using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(evalDir, "clip_evaluation.json"))))
            {
                var sim = doc.RootElement.GetProperty("similarity").GetDouble();
                var r1 = doc.RootElement.GetProperty("recall_at_1").GetDouble();
                output.WriteLine($"CLIP similarity {sim:F4}, R@1 {r1:F4}");
                double.IsFinite(sim).Should().BeTrue();
                sim.Should().BeInRange(-1, 1);
                r1.Should().BeInRange(0, 1);
                doc.RootElement.GetProperty("candidates").GetInt32().Should().Be(2);
                doc.RootElement.GetProperty("prompts").GetArrayLength().Should().Be(2);
            }
            using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(evalDir, "evaluation.json"))))
            {
                foreach (var key in new[] { "clip_similarity", "clip_r_at_1", "builtin_iou", "builtin_colour_error", "builtin_r_at_1" })
                    double.IsFinite(doc.RootElement.GetProperty(key).GetDouble()).Should().BeTrue(key);
                doc.RootElement.GetProperty("views").GetInt32().Should().Be(3);
            }

            // Renders of another prompt set in the same folder would skew R@1: refused by name.
            File.WriteAllText(lib, """{"train": ["a red cube"], "val": [], "test": ["a green cone"]}""");
            (code, _, err) = Run("evaluate", "-c", checkpoint, "-p", lib, "--views", "1", "--size", "16", "--out", evalDir);
            code.Should().Be(1);
            err.Should().Contain("holds renders of other prompts").And.NotContain("   at ");
        }
        finally
        {
            root.Delete(true);
            if (clip is not null) Directory.Delete(clip, true);
        }
    }
}
