using BenchmarkDotNet.Attributes;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Benchmarks;

/// <summary>
/// Per-step cost of each distiller outside the model: encoding, sampling, batching, CFG / Perp-Neg algebra, the target-trick
/// loss and diagnostics, measured against a prior whose noise prediction is one fused elementwise op (so the numbers are the
/// distiller's own overhead at Stable Diffusion latent size 4×64×64).
/// </summary>
[MemoryDiagnoser]
public class DistillerBenchmarks
{
    IScoreDistiller _distiller = null!;
    CheapPrior _prior = null!;
    CameraConditionedNoisePredictor? _particle;
    CameraBatch _cams = null!;
    Tensor _images = null!;
    string[] _prompts = null!;

    [Params("SDS", "CSD", "ASD", "ASD+PerpNeg", "VSD", "ISM")] public string Distiller = "ASD";

    [Params(1, 4)] public int Batch;

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(1);
        _prior = new CheapPrior();
        var g = new Generator(0);
        _distiller = Distiller switch
        {
            "SDS" => new SdsDistiller(_prior, generator: g),
            "CSD" => new CsdDistiller(_prior, generator: g),
            "ASD" => new AsdDistiller(_prior, generator: g),
            "ASD+PerpNeg" => new AsdDistiller(_prior, AsdOptions.ScaleDreamerStableDiffusion, g),
            "VSD" => new VsdDistiller(_prior, _particle = new CameraConditionedNoisePredictor(_prior.LatentShape, 64, 32), generator: g),
            _ => new IsmDistiller(_prior, generator: g),
        };
        var c2w = eye(4).unsqueeze(0).repeat(Batch, 1, 1);
        _cams = new CameraBatch(c2w, full(Batch, 50f), zeros(Batch), linspace(0, 270, Batch), full(Batch, 2f));
        _images = rand(new long[] { Batch, 3, 512, 512 }, generator: g).requires_grad_(true);
        _prompts = Enumerable.Repeat("a hamburger", Batch).ToArray();
    }

    [Benchmark]
    public float Step()
    {
        using var scope = NewDisposeScope();
        var r = _distiller.Distill(new DistillationInput(_images, _prompts, _cams, new TrainingProgress(100, 1000)));
        r.Loss.backward();
        _images.grad?.zero_();
        return (float)r.Diagnostics.GradientNorm;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        (_distiller as IDisposable)?.Dispose();
        _particle?.Dispose();
        _cams.Dispose();
        _images.Dispose();
        _prior.Dispose();
    }

    /// <summary>8× average-pool "encoder" to 4×64×64 and ε̂ = 0.9·x_t + mean(text): cheap, differentiable, shape-faithful.</summary>
    sealed class CheapPrior : IDiffusionPrior
    {
        public string ModelId => "cheap";
        public NoiseSchedule Schedule { get; } = NoiseSchedule.ScaledLinear();
        public LatentShape LatentShape => new(4, 64, 64);
        public int ImageSize => 512;
        public int ViewsPerSample => 1;
        public bool UsesCameras => false;
        public Device Device => CPU;

        public TextConditioning EncodeText(IReadOnlyList<string> prompts)
        {
            var tokens = zeros(prompts.Count, 77, 64);
            for (int i = 0; i < prompts.Count; i++) tokens[i].fill_(prompts[i].Length * 0.01);
            return new TextConditioning(prompts, tokens, tokens[TensorIndex.Colon, 0].clone());
        }

        public Tensor EncodeImages(Tensor rgb, Generator? generator = null)
        {
            using var scope = NewDisposeScope();
            var z = nn.functional.avg_pool2d(rgb * 2 - 1, 8);
            return cat(new[] { z, z[TensorIndex.Colon, ..1] }, 1).MoveToOuterDisposeScope();
        }

        public Tensor DecodeLatents(Tensor latents) => latents[TensorIndex.Colon, ..3].detach().clone();

        public Tensor PredictNoise(NoiseQuery query)
        {
            using var scope = NewDisposeScope();
            return (0.9 * query.NoisyLatents + query.Text.mean(new long[] { 1, 2 }).reshape(-1, 1, 1, 1)).MoveToOuterDisposeScope();
        }

        public void Dispose() { }
    }
}
