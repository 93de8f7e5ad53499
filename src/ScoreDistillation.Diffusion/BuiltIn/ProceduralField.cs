using ScoreDistillation.Rendering;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// A batch of analytic world objects as an SDF radiance field: row b of the points is evaluated against object b.
/// Features are logit(colour) so the renderer's sigmoid material reproduces the shaded colour
/// (<see cref="AnalyticShapes.ShadedColour"/>, or the flat albedo when <see cref="Shaded"/> is false).
/// </summary>
public sealed class ProceduralField : IRadianceField
{
    /// <summary>Creates a field for <paramref name="objects"/>.</summary>
    /// <param name="objects">One object per row.</param>
    /// <param name="radius">Half-size of the bounding cube (ScaleDreamer's generators use 2.0).</param>
    /// <param name="shaded">Bake diffuse shading into the colour (default true) so shapes read in flat-coloured renders.</param>
    public ProceduralField(IReadOnlyList<WorldObject> objects, double radius = DefaultRadius, bool shaded = true)
    {
        ArgumentNullException.ThrowIfNull(objects);
        if (objects.Count == 0) throw new ArgumentException("A field needs at least one object.", nameof(objects));
        if (!(radius > 0)) throw new ArgumentOutOfRangeException(nameof(radius), radius, "Radius must be positive.");
        foreach (var o in objects)
            if (o.Size * 1.5 > radius) throw new ArgumentException($"Object '{o}' does not fit the bounding cube of radius {radius}.", nameof(objects));
        Objects = objects.ToArray();
        Radius = radius;
        Shaded = shaded;
    }

    /// <summary>ScaleDreamer's bounding-cube half-size for SDF generators.</summary>
    public const double DefaultRadius = 2.0;

    /// <summary>The objects, one per row.</summary>
    public IReadOnlyList<WorldObject> Objects { get; }

    /// <summary>True when colours include the baked shading.</summary>
    public bool Shaded { get; }

    /// <inheritdoc />
    public FieldKind Kind => FieldKind.SignedDistance;

    /// <inheritdoc />
    public int Count => Objects.Count;

    /// <inheritdoc />
    public double Radius { get; }

    /// <inheritdoc />
    public FieldSample Query(Tensor points)
    {
        Check(points);
        using var scope = NewDisposeScope();
        var sdf = new Tensor[Count];
        var feat = new Tensor[Count];
        for (int b = 0; b < Count; b++)
        {
            var p = points[b];
            sdf[b] = AnalyticShapes.SignedDistance(Objects[b], p);
            var rgb = Shaded ? AnalyticShapes.ShadedColour(Objects[b], p) : AnalyticShapes.Albedo(Objects[b], p);
            feat[b] = rgb.clamp(1e-3, 1 - 1e-3).logit();
        }
        var geometry = stack(sdf, 0).MoveToOuterDisposeScope();
        var features = stack(feat, 0).MoveToOuterDisposeScope();
        return new FieldSample(geometry, features);
    }

    /// <inheritdoc />
    public Tensor QueryGeometry(Tensor points)
    {
        Check(points);
        using var scope = NewDisposeScope();
        var sdf = new Tensor[Count];
        for (int b = 0; b < Count; b++) sdf[b] = AnalyticShapes.SignedDistance(Objects[b], points[b]);
        return stack(sdf, 0).MoveToOuterDisposeScope();
    }

    /// <summary>Colour [B, N, 3] in [0, 1] of each object at points [B, N, 3] (what the features encode).</summary>
    public Tensor Colour(Tensor points)
    {
        Check(points);
        using var scope = NewDisposeScope();
        var rgb = new Tensor[Count];
        for (int b = 0; b < Count; b++)
            rgb[b] = Shaded ? AnalyticShapes.ShadedColour(Objects[b], points[b]) : AnalyticShapes.Albedo(Objects[b], points[b]);
        return stack(rgb, 0).MoveToOuterDisposeScope();
    }

    void Check(Tensor points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 3 || points.shape[0] != Count || points.shape[2] != 3)
            throw new ArgumentException($"Points must be [{Count}, N, 3] for {Count} objects, got [{string.Join(", ", points.shape)}].", nameof(points));
    }
}
