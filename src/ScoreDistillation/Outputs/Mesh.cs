using System.Numerics;

namespace ScoreDistillation.Outputs;

/// <summary>A triangle mesh with per-vertex colours (RGB in [0, 1]), counter-clockwise front faces pointing outward.</summary>
public sealed class Mesh
{
    /// <summary>Creates a mesh.</summary>
    public Mesh(IReadOnlyList<Vector3> positions, IReadOnlyList<Vector3> colors, IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(positions);
        ArgumentNullException.ThrowIfNull(colors);
        ArgumentNullException.ThrowIfNull(indices);
        if (colors.Count != positions.Count) throw new ArgumentException($"{colors.Count} colours for {positions.Count} vertices.", nameof(colors));
        if (indices.Count % 3 != 0) throw new ArgumentException($"Index count {indices.Count} is not a multiple of 3.", nameof(indices));
        foreach (var i in indices)
            if ((uint)i >= (uint)positions.Count) throw new ArgumentException($"Index {i} outside [0, {positions.Count}).", nameof(indices));
        Positions = positions.ToArray();
        Colors = colors.ToArray();
        Indices = indices.ToArray();
    }

    /// <summary>Vertex positions.</summary>
    public IReadOnlyList<Vector3> Positions { get; }

    /// <summary>Vertex colours, RGB in [0, 1].</summary>
    public IReadOnlyList<Vector3> Colors { get; }

    /// <summary>Triangle vertex indices (three per triangle).</summary>
    public IReadOnlyList<int> Indices { get; }

    /// <summary>Number of triangles.</summary>
    public int TriangleCount => Indices.Count / 3;

    /// <summary>True when there is no triangle.</summary>
    public bool IsEmpty => Indices.Count == 0;

    /// <summary>Axis-aligned bounds (zero when empty).</summary>
    public (Vector3 Min, Vector3 Max) Bounds()
    {
        if (Positions.Count == 0) return (Vector3.Zero, Vector3.Zero);
        var min = new Vector3(float.MaxValue);
        var max = new Vector3(float.MinValue);
        foreach (var p in Positions) { min = Vector3.Min(min, p); max = Vector3.Max(max, p); }
        return (min, max);
    }

    /// <summary>Signed volume by the divergence theorem (positive for a closed, outward-oriented surface).</summary>
    public double SignedVolume()
    {
        double v = 0;
        for (int t = 0; t < Indices.Count; t += 3)
            v += Vector3.Dot(Positions[Indices[t]], Vector3.Cross(Positions[Indices[t + 1]], Positions[Indices[t + 2]])) / 6.0;
        return v;
    }
}
