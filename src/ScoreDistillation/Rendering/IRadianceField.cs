using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>What the geometry channel of a field means.</summary>
public enum FieldKind
{
    /// <summary>Signed distance (negative inside); rendered with VolSDF.</summary>
    SignedDistance,
    /// <summary>Raw density before the softplus activation; rendered as a NeRF.</summary>
    Density,
}

/// <summary>Field values at a batch of points.</summary>
/// <param name="Geometry">SDF or raw density [B, N, 1].</param>
/// <param name="Features">Raw colour features [B, N, 3] (the renderer applies the material activation).</param>
public sealed record FieldSample(Tensor Geometry, Tensor Features);

/// <summary>
/// A batch of B 3D fields — one per prompt, the "space cache" a generator produced — evaluated at points in world
/// coordinates. Row b of the points is only ever evaluated against field b: prompts never mix.
/// </summary>
public interface IRadianceField
{
    /// <summary>How to interpret <see cref="FieldSample.Geometry"/>.</summary>
    FieldKind Kind { get; }

    /// <summary>Number of fields B.</summary>
    int Count { get; }

    /// <summary>Half-size of the bounding cube [−r, r]³ outside which the field is empty.</summary>
    double Radius { get; }

    /// <summary>Evaluates the fields at <paramref name="points"/> [B, N, 3].</summary>
    FieldSample Query(Tensor points);

    /// <summary>Evaluates only the geometry channel [B, N, 1] (cheaper where the field allows; used for normals and proposals).</summary>
    Tensor QueryGeometry(Tensor points);
}

/// <summary>Colour seen along rays that leave the scene.</summary>
public interface IBackground
{
    /// <summary>Background RGB in [0, 1] [B, N, 3] for unit ray directions [B, N, 3] of the B prompts.</summary>
    /// <param name="directions">Unit directions in world coordinates.</param>
    /// <param name="pooledText">Pooled text embeddings [B, D] for text-conditioned backgrounds; ignored by others.</param>
    Tensor Evaluate(Tensor directions, Tensor? pooledText);
}
