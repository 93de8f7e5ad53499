using BenchmarkDotNet.Attributes;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Benchmarks;

/// <summary>Forward-process cost at Stable Diffusion latent sizes (the per-step overhead outside the UNet).</summary>
[MemoryDiagnoser]
public class NoiseScheduleBenchmarks
{
    readonly NoiseSchedule _schedule = NoiseSchedule.ScaledLinear();
    Tensor _x0 = null!, _eps = null!, _t = null!;

    [Params(1, 8)] public int Batch;

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(1);
        var g = new Generator(0);
        _x0 = randn(new long[] { Batch, 4, 64, 64 }, generator: g);
        _eps = randn(new long[] { Batch, 4, 64, 64 }, generator: g);
        _t = randint(20, 980, new long[] { Batch }, generator: g);
    }

    [Benchmark]
    public float AddNoise()
    {
        using var scope = NewDisposeScope();
        return _schedule.AddNoise(_x0, _eps, _t).sum().item<float>();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x0.Dispose(); _eps.Dispose(); _t.Dispose();
    }
}
