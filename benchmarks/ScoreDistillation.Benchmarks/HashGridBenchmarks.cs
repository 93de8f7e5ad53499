using BenchmarkDotNet.Attributes;
using ScoreDistillation.Generators;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Benchmarks;

/// <summary>
/// Hash-grid encoding at the paper configuration (16 levels × 2 features, 2^19 entries, base 16, scale 1.4473):
/// forward and forward+backward (gradient w.r.t. the table, as in training) on <see cref="Points"/> points in [0, 1]³.
/// Points per second = Points / mean time.
/// </summary>
[MemoryDiagnoser]
public class HashGridBenchmarks
{
    HashGridEncoding _grid = null!;
    Tensor _points = null!;
    Tensor _proj = null!;

    [Params(65536)] public int Points;

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(1);
        var g = new Generator(0);
        _grid = new HashGridEncoding(HashGridOptions.HyperInstantNgp, g);
        _points = rand(new long[] { Points, 3 }, generator: g);
        _proj = randn(new long[] { Points, 32 }, generator: g);
    }

    [Benchmark]
    public float Forward()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        return _grid.forward(_points).sum().item<float>();
    }

    [Benchmark]
    public float ForwardBackward()
    {
        using var scope = NewDisposeScope();
        _grid.zero_grad();
        var loss = _grid.forward(_points).mul(_proj).sum();
        loss.backward();
        return loss.item<float>();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _points.Dispose();
        _proj.Dispose();
        _grid.Dispose();
    }
}
