using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

/// <summary>B spheres at the origin: SDF ‖p‖ − r_b, constant colour logits per sphere; both are trainable.</summary>
internal sealed class SphereField : IRadianceField, IDisposable
{
    public SphereField(double[] radii, double[][]? colourLogits = null, double boxRadius = 2.0)
    {
        Radii = tensor(radii, ScalarType.Float32).requires_grad_(true);
        var logits = colourLogits ?? radii.Select(_ => new[] { 0.5, -0.5, 1.0 }).ToArray();
        ColourLogits = tensor(logits.SelectMany(c => c).ToArray(), ScalarType.Float32).view(radii.Length, 3).requires_grad_(true);
        Radius = boxRadius;
    }

    public Tensor Radii { get; }
    public Tensor ColourLogits { get; }
    public int QueryCount { get; private set; }
    public FieldKind Kind => FieldKind.SignedDistance;
    public int Count => (int)Radii.shape[0];
    public double Radius { get; }

    public List<long> LiveTensorsAtQuery { get; } = new();

    public FieldSample Query(Tensor points)
    {
        QueryCount++;
        LiveTensorsAtQuery.Add(ScoreDistillation.Tests.Infrastructure.LiveTensors.Count);
        var sdf = QueryGeometry(points);
        var features = ColourLogits.unsqueeze(1).expand(points.shape[0], points.shape[1], 3);
        return new FieldSample(sdf, features);
    }

    public Tensor QueryGeometry(Tensor points)
    {
        if (points.shape[0] != Count) throw new ArgumentException($"Expected {Count} fields, got points [{string.Join(", ", points.shape)}].");
        return (points.norm(-1, keepdim: true) - Radii.view(-1, 1, 1));
    }

    public void Dispose()
    {
        Radii.Dispose();
        ColourLogits.Dispose();
    }
}

/// <summary>Constant raw density everywhere (NeRF mode) with constant colour.</summary>
internal sealed class ConstantDensityField : IRadianceField
{
    readonly double _raw;
    public ConstantDensityField(double raw, int count = 1) { _raw = raw; Count = count; }
    public FieldKind Kind => FieldKind.Density;
    public int Count { get; }
    public double Radius => 10.0;
    public FieldSample Query(Tensor points) => new(QueryGeometry(points), zeros(points.shape[0], points.shape[1], 3, dtype: points.dtype, device: points.device));
    public Tensor QueryGeometry(Tensor points) => full(new[] { points.shape[0], points.shape[1], 1L }, _raw, dtype: points.dtype, device: points.device);
}
