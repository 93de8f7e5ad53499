using FluentAssertions;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

/// <summary>A deterministic pixel-space prior: ε̂ = 0.3·x_t + text bias (enough to exercise the loop exactly).</summary>
sealed class ToyPixelPrior : IDiffusionPrior
{
    public string ModelId => "toy-pixel-v1";
    public NoiseSchedule Schedule { get; } = NoiseSchedule.ScaledLinear();
    public LatentShape LatentShape => new(3, 16, 16);
    public int ImageSize => 16;
    public int ViewsPerSample => 1;
    public bool UsesCameras => false;
    public Device Device => CPU;

    public TextConditioning EncodeText(IReadOnlyList<string> prompts)
    {
        var rows = prompts.Select(p => (float)(p.Length % 7) / 7f).ToArray();
        using var v = tensor(rows);
        return new TextConditioning(prompts, v.reshape(-1, 1, 1).expand(-1, 2, 8).contiguous(), v.reshape(-1, 1).expand(-1, 8).contiguous());
    }

    public Tensor EncodeImages(Tensor rgb, Generator? generator = null)
    {
        var x = rgb.shape[2] == 16 ? rgb : nn.functional.interpolate(rgb, new long[] { 16, 16 }, mode: InterpolationMode.Bilinear, align_corners: false);
        return x * 2 - 1;
    }

    public Tensor DecodeLatents(Tensor latents) => (latents + 1) / 2;

    public Tensor PredictNoise(NoiseQuery query) => query.NoisyLatents * 0.3 + query.Text.mean(new long[] { 1, 2 }).reshape(-1, 1, 1, 1);

    public void Dispose() { }
}

public sealed class TrainerTests : IDisposable
{
    readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("sd-trainer-");
    public void Dispose() => _dir.Delete(true);

    static (Trainer Trainer, InstantNgp Gen) Build(ToyPixelPrior prior, int steps, string? outDir = null, ScoreDistillation.Distillers.ScoreDistillerBase? distiller = null)
    {
        using var g = new Generator(3, CPU);
        var gen = new InstantNgp(new InstantNgpOptions
        {
            Encoding = new HashGridOptions { Levels = 2, FeaturesPerLevel = 2, Log2TableSize = 10, BaseResolution = 4, PerLevelScale = 2 },
            Neurons = 8,
        }, g);
        var renderer = new VolumeRenderer(new VolumeRendererOptions { ProposalSamples = 8, ImportanceSamples = 8, Far = 2.6, DensityBias = ScoreDistillation.Rendering.DensityBias.None, ComputeNormals = false });
        var d = distiller ?? new AsdDistiller(prior, new AsdOptions { Guidance = AsdOptions.Default.Guidance with { ViewDependent = null } }, new Generator(5, CPU));
        var options = new TrainerOptions
        {
            Steps = steps,
            RenderSize = 8,
            AdamBetas = (0.9, 0.99),
            LearningRates = new Dictionary<string, double> { ["generator"] = 1e-2 },
            SparsityWeight = 0.5,
            OpaqueWeight = new StepSchedule(2, 0, 1, 4),
            GradientAccumulation = 2,
            Seed = 11,
            OutputDirectory = outDir,
        };
        var lib = new PromptLibrary(new[] { "a", "bb", "ccc" }, new[] { "a" }, new[] { "a" });
        return (new Trainer(gen, d, renderer, lib, options), gen);
    }

    [Fact]
    public void Resume_from_a_checkpoint_continues_exactly()
    {
        using var prior = new ToyPixelPrior();
        var (full, fullGen) = Build(prior, 4);
        using (full) using (fullGen)
        {
            var uninterrupted = Enumerable.Range(0, 4).Select(_ => full.TrainStep()).ToArray();

            var path = Path.Combine(_dir.FullName, "half.sdckpt");
            var (first, firstGen) = Build(prior, 4);
            using (first) using (firstGen)
            {
                first.TrainStep();
                first.TrainStep();
                using var ck = first.CreateCheckpoint();
                ck.Save(path);
            }

            var (second, secondGen) = Build(prior, 4);
            using (second) using (secondGen)
            {
                using (no_grad()) foreach (var p in secondGen.parameters()) p.add_(1.0); // prove the weights come from the checkpoint
                using (var ck = Checkpoint.Load(path)) second.Restore(ck, path);
                second.Step.Should().Be(2);
                var resumed = new[] { second.TrainStep(), second.TrainStep() };
                resumed.Select(s => s.Loss).Should().Equal(uninterrupted.Skip(2).Select(s => s.Loss));
                resumed.Select(s => s.GradientNorm).Should().Equal(uninterrupted.Skip(2).Select(s => s.GradientNorm));
                resumed.Select(s => string.Join(",", s.Timesteps)).Should().Equal(uninterrupted.Skip(2).Select(s => string.Join(",", s.Timesteps)));
            }
        }
    }

    [Fact]
    public void A_checkpoint_of_another_configuration_is_refused()
    {
        using var prior = new ToyPixelPrior();
        var path = Path.Combine(_dir.FullName, "a.sdckpt");
        var (a, ga) = Build(prior, 4);
        using (a) using (ga)
        {
            a.TrainStep();
            using var ck = a.CreateCheckpoint();
            ck.Save(path);
        }
        var (b, gb) = Build(prior, 4, distiller: new SdsDistiller(prior, new SdsOptions { Guidance = new() { ViewDependent = null } }, new Generator(5, CPU)));
        using (b) using (gb)
        {
            using var ck = Checkpoint.Load(path);
            var act = () => b.Restore(ck, path);
            act.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("distiller: checkpoint has 'ASD', this run has 'SDS'");
        }
    }

    [Fact]
    public void Train_reports_progress_honours_cancellation_and_writes_checkpoints()
    {
        using var prior = new ToyPixelPrior();
        var (t, g) = Build(prior, 3, outDir: _dir.FullName);
        using (t) using (g)
        {
            var seen = new List<int>();
            using var cts = new CancellationTokenSource();
            var progress = new SyncProgress(s => { seen.Add(s.Step); if (s.Step == 2) cts.Cancel(); });
            var act = () => t.Train(cts.Token, progress);
            act.Should().Throw<OperationCanceledException>();
            seen.Should().Equal(1, 2);
            new CheckpointStore(Path.Combine(_dir.FullName, "checkpoints")).List().Should().ContainSingle().Which.Should().EndWith("step-00000002.sdckpt");
            t.Train(default, progress);
            seen.Should().Equal(1, 2, 3);
            File.Exists(Path.Combine(_dir.FullName, "eval", "step-000003.png")).Should().BeTrue();
        }
    }

    [Fact]
    public void Memory_stays_flat_across_steps()
    {
        using var prior = new ToyPixelPrior();
        var (t, g) = Build(prior, 12);
        using (t) using (g)
        {
            t.TrainStep();
            t.TrainStep();
            long before = Infrastructure.LiveTensors.Count;
            for (int i = 0; i < 5; i++) t.TrainStep();
            Infrastructure.LiveTensors.Count.Should().Be(before);
        }
    }

    sealed class SyncProgress(Action<TrainingStep> a) : IProgress<TrainingStep>
    {
        public void Report(TrainingStep value) => a(value);
    }
}
