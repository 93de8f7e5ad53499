using BenchmarkDotNet.Attributes;
using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Benchmarks;

/// <summary>
/// One training render step of the reference configuration (64×64, 128 proposal + 64 importance ⇒ 193 samples per ray,
/// finite-difference normals, eikonal/sparsity/entropy regularisers) over an analytic sphere SDF, so the number is the
/// renderer's own cost; a hash-grid field adds its encoding cost on top.
/// </summary>
[MemoryDiagnoser]
public class RenderBenchmarks
{
    SphereSdf _field = null!;
    CameraBatch _cameras = null!;
    RayBundle _rays = null!;
    readonly VolumeRenderer _renderer = new();
    readonly SolidColorBackground _background = new();
    Generator _generator = null!;

    /// <summary>Prompts (fields) in the batch, one view each.</summary>
    [Params(1, 2)] public int Prompts;

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(1);
        _generator = new Generator(0);
        _field = new SphereSdf(Prompts);
        _cameras = new CameraSampler().Sample(Prompts, new Generator(1));
        _rays = RayBundle.FromCameras(_cameras, 64, 64);
    }

    /// <summary>Forward + backward of rgb.mean() plus the MG15 regularisers.</summary>
    [Benchmark]
    public float ForwardBackward64()
    {
        using var scope = NewDisposeScope();
        using var res = _renderer.Render(_field, _rays, _background, generator: _generator);
        var loss = res.Rgb.mean() + RegularizerWeights.HyperIngp50k.Loss(res, 1000);
        loss.backward();
        using (no_grad()) _field.Radii.grad!.zero_();
        return 0;
    }

    /// <summary>Evaluation render without gradient (chunked path), same resolution.</summary>
    [Benchmark]
    public float ForwardNoGrad64()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var res = _renderer.Render(_field, _rays, _background);
        return 0;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _rays.Dispose();
        _cameras.Dispose();
        _field.Radii.Dispose();
    }

    sealed class SphereSdf : IRadianceField
    {
        public SphereSdf(int count)
        {
            Radii = full(count, 0.5f).requires_grad_(true);
            Count = count;
        }

        public Tensor Radii { get; }
        public FieldKind Kind => FieldKind.SignedDistance;
        public int Count { get; }
        public double Radius => 2.0;

        public FieldSample Query(Tensor points) => new(QueryGeometry(points), points * 0.5);

        public Tensor QueryGeometry(Tensor points) => points.norm(-1, keepdim: true) - Radii.view(-1, 1, 1);
    }
}
