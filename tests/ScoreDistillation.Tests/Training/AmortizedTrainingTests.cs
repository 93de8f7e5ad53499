using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

public class AmortizedTrainingTests(ITestOutputHelper output)
{
    static readonly string[] Prompts = { "a red cube", "a blue sphere", "a green cone", "a yellow cylinder" };

    // Posed built-in prior, ASD at CFG 2 and the near-surface finite-difference eikonal (the CLI's recipe). Measured on
    // 2026-12-06 on this machine: IoU 0.159 → 0.278 and distillation loss 11.8 → 3.8 in 200 steps, 16 s. With the
    // view-agnostic prior and no eikonal the loss fell but the IoU fell too (0.159 → 0.018, docs/results.md).
    [Fact]
    [Trait("Category", "Slow")]
    public void Short_amortized_run_on_four_builtin_prompts_lowers_the_loss_and_raises_iou()
    {
        using var prior = new BuiltInPrior(new BuiltInPriorOptions
        {
            TextWidth = 64,
            PosedFovY = 55,
            References = new ReferenceLibraryOptions { ImageSize = 16, ViewsPerPrompt = 8, UnconditionalPrompts = Prompts, UnconditionalViewsPerPrompt = 4, Cameras = new CameraSamplerOptions { FovY = (55, 55) } },
        });
        prior.Library.Prefetch(Prompts);
        _ = prior.Library.Unconditional;
        using var g = new Generator(0, CPU);
        using var gen = new HyperInstantNgp(new HyperInstantNgpOptions
        {
            TextDims = 64,
            Neurons = 16,
            Encoding = new HashGridOptions { Levels = 4, FeaturesPerLevel = 2, Log2TableSize = 12, BaseResolution = 8, PerLevelScale = 1.5 },
            Background = new TextConditionedHashGridBackgroundOptions { TextDims = 64, Neurons = 8, Encoding = new HashGridOptions { Levels = 1, FeaturesPerLevel = 2, Log2TableSize = 8, BaseResolution = 4, PerLevelScale = 1.0 } },
        }, g);
        var renderer = new VolumeRenderer(new VolumeRendererOptions { ProposalSamples = 16, ImportanceSamples = 16, Far = 2.6, ComputeNormals = false });
        var distiller = new AsdDistiller(prior, new AsdOptions { Guidance = AsdOptions.Default.Guidance with { ViewDependent = null, GuidanceScale = 2 } }, new Generator(1, CPU));
        var options = new TrainerOptions
        {
            Steps = 200,
            RenderSize = 16,
            AdamBetas = (0.9, 0.99),
            LearningRates = new Dictionary<string, double> { ["generator"] = 1e-2, ["background"] = 1e-2 },
            SparsityWeight = 0.0,
            OpaqueWeight = 0.0,
            EikonalWeight = 10.0,
            EikonalFiniteDifference = 0.02,
            EikonalPoints = 512,
            EikonalExtent = 0.8,
            EikonalNearSurface = true,
            Cameras = new CameraSamplerOptions { FovY = (55, 55) },
            Seed = 0,
        };
        using var trainer = new Trainer(gen, distiller, renderer, new PromptLibrary(Prompts, Prompts, Prompts), options, new SolidColorBackground(1, 1, 1));
        var objects = Prompts.Select(p => WorldObject.Parse(p)).ToArray();
        double Iou()
        {
            using var scope = NewDisposeScope();
            return WorldMetrics.OccupancyIoU(trainer.FieldFor(Prompts), objects, resolution: 32).Average();
        }
        double before = Iou();
        var steps = trainer.Train();
        double after = Iou();
        double early = steps.Take(15).Average(s => s.DistillationLoss), late = steps.TakeLast(15).Average(s => s.DistillationLoss);
        output.WriteLine($"IoU {before:F3} -> {after:F3}; distillation loss (mean of 15 steps) {early:F4} -> {late:F4}; {steps.Average(s => s.Seconds):F3} s/step");
        late.Should().BeLessThan(early);
        after.Should().BeGreaterThan(before + 0.05, "the fields move towards the four objects");
    }
}
