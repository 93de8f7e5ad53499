using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// What <see cref="VolumeRenderer"/> produces for N cameras at H×W. Images are [N, C, H, W]; per-sample tensors
/// (present only for renders that keep them, i.e. unchunked renders) are [N, H·W, S] with S samples per ray, ordered
/// like the pixels. Owns its tensors.
/// </summary>
public sealed class RenderResult : IDisposable
{
    /// <summary>Final colour, foreground + background·(1 − opacity) [N, 3, H, W].</summary>
    public required Tensor Rgb { get; init; }

    /// <summary>Accumulated foreground colour Σ w·rgb [N, 3, H, W].</summary>
    public required Tensor RgbForeground { get; init; }

    /// <summary>Background colour along each ray [N, 3, H, W].</summary>
    public required Tensor Background { get; init; }

    /// <summary>Opacity Σ w [N, 1, H, W].</summary>
    public required Tensor Opacity { get; init; }

    /// <summary>Expected depth Σ w·t along the unit ray [N, 1, H, W] (not normalised by opacity).</summary>
    public required Tensor Depth { get; init; }

    /// <summary>Depth variance Σ w·(t − depth)² [N, 1, H, W].</summary>
    public required Tensor ZVariance { get; init; }

    /// <summary>
    /// Visualisation normal, opacity·(normalize(Σ w·n) + 1)/2 with the normal detached (reference <c>comp_normal</c>)
    /// [N, 3, H, W]; null when normals are off.
    /// </summary>
    public Tensor? Normal { get; init; }

    /// <summary>Per-sample weights w_i = α_i Π_{j&lt;i}(1 − α_j) [N, H·W, S].</summary>
    public Tensor? SampleWeights { get; init; }

    /// <summary>Per-sample pre-activation geometry [N, H·W, S]: SDF, or raw density plus bias in NeRF mode.</summary>
    public Tensor? SampleGeometry { get; init; }

    /// <summary>Per-sample finite-difference gradient of the geometry [N, H·W, S, 3] (the eikonal loss input); null when normals are off.</summary>
    public Tensor? SampleGradients { get; init; }

    /// <summary>Per-sample alpha [N, H·W, S].</summary>
    public Tensor? SampleAlpha { get; init; }

    /// <summary>Per-sample interval midpoints t along the ray [N, H·W, S].</summary>
    public Tensor? SampleDepths { get; init; }

    /// <summary>Per-sample interval lengths Δt [N, H·W, S].</summary>
    public Tensor? SampleIntervals { get; init; }

    /// <summary>Number of cameras N.</summary>
    public int Count => (int)Rgb.shape[0];

    /// <summary>Moves every tensor to the enclosing dispose scope.</summary>
    internal RenderResult MoveToOuterDisposeScope()
    {
        foreach (var t in All()) t.MoveToOuterDisposeScope();
        return this;
    }

    IEnumerable<Tensor> All()
    {
        yield return Rgb;
        yield return RgbForeground;
        yield return Background;
        yield return Opacity;
        yield return Depth;
        yield return ZVariance;
        foreach (var t in new[] { Normal, SampleWeights, SampleGeometry, SampleGradients, SampleAlpha, SampleDepths, SampleIntervals })
            if (t is not null) yield return t;
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        foreach (var t in All()) t.Dispose();
    }
}
