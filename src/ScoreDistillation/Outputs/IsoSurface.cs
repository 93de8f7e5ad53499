using System.Numerics;

namespace ScoreDistillation.Outputs;

/// <summary>
/// Iso-surface extraction on a regular grid (an SDF, or a negated density), by marching cubes (the default) or marching
/// tetrahedra; see <see cref="IsoSurfaceMethod"/>. Both produce a closed, consistently oriented 2-manifold wherever the
/// surface stays inside the grid, with vertices on shared grid edges merged.
/// </summary>
public static class IsoSurface
{
    static readonly int[][] CubeCorners =
    {
        new[] { 0, 0, 0 }, new[] { 1, 0, 0 }, new[] { 1, 1, 0 }, new[] { 0, 1, 0 },
        new[] { 0, 0, 1 }, new[] { 1, 0, 1 }, new[] { 1, 1, 1 }, new[] { 0, 1, 1 },
    };

    static readonly int[][] Tetrahedra =
    {
        new[] { 0, 1, 2, 6 }, new[] { 0, 2, 3, 6 }, new[] { 0, 3, 7, 6 },
        new[] { 0, 7, 4, 6 }, new[] { 0, 4, 5, 6 }, new[] { 0, 5, 1, 6 },
    };

    /// <summary>
    /// Extracts the surface <c>value = level</c> of a grid where values below <paramref name="level"/> are inside (an
    /// SDF). For a density use the negated density and the negated threshold. Each vertex lies on a grid edge whose end
    /// points straddle the level, placed by linear interpolation, and is shared by all triangles using that edge.
    /// </summary>
    /// <param name="values">Grid values, index <c>(i·N + j)·N + k</c> for the point (x_i, y_j, z_k); no NaN (±∞ is
    /// allowed and puts the crossing at the finite end point).</param>
    /// <param name="resolution">N, points per axis (≥ 2).</param>
    /// <param name="min">World coordinate of grid point 0 on every axis.</param>
    /// <param name="max">World coordinate of grid point N−1 on every axis (greater than <paramref name="min"/>).</param>
    /// <param name="level">Iso level (finite).</param>
    /// <param name="method">Marching cubes (default) or marching tetrahedra.</param>
    /// <returns>Positions and triangle indices, counter-clockwise seen from outside (normals towards larger values).
    /// Empty when the grid is entirely inside or entirely outside.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="values"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than 2 points per axis, a non-finite level, or an unknown
    /// method.</exception>
    /// <exception cref="ArgumentException">Wrong number of values, a NaN value, or non-finite or empty bounds.</exception>
    public static (List<Vector3> Positions, List<int> Indices) Extract(float[] values, int resolution, float min, float max, float level = 0,
        IsoSurfaceMethod method = IsoSurfaceMethod.MarchingCubes)
    {
        int n = resolution;
        ArgumentNullException.ThrowIfNull(values);
        if (n < 2) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "Need at least 2 points per axis.");
        if (values.Length != (long)n * n * n) throw new ArgumentException($"Expected {n}³ = {(long)n * n * n} values, got {values.Length}.", nameof(values));
        if (!float.IsFinite(min) || !float.IsFinite(max) || !(min < max))
            throw new ArgumentException($"Need finite bounds with min < max, got min = {min}, max = {max}.", nameof(max));
        if (!float.IsFinite(level)) throw new ArgumentOutOfRangeException(nameof(level), level, "The iso level must be finite.");
        int nan = Array.FindIndex(values, float.IsNaN);
        if (nan >= 0)
            throw new ArgumentException($"values[{nan}] (grid point i = {nan / (n * n)}, j = {nan / n % n}, k = {nan % n}) is NaN; the grid must not contain NaN.", nameof(values));
        return method switch
        {
            IsoSurfaceMethod.MarchingCubes => MarchingCubes.Extract(values, n, min, max, level),
            IsoSurfaceMethod.MarchingTetrahedra => MarchingTetrahedra(values, n, min, max, level),
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, "Unknown iso-surface method."),
        };
    }

    static (List<Vector3> Positions, List<int> Indices) MarchingTetrahedra(float[] values, int n, float min, float max, float level)
    {
        float step = (max - min) / (n - 1);
        var positions = new List<Vector3>();
        var indices = new List<int>();
        var edgeVertex = new Dictionary<long, int>();
        long total = (long)n * n * n;
        var ids = new int[4];
        var v = new float[4];
        var corner = new int[8];
        var ins = new int[4];
        var outs = new int[4];

        Vector3 Point(int id)
        {
            int i = id / (n * n), j = id / n % n, k = id % n;
            return new Vector3(min + i * step, min + j * step, min + k * step);
        }

        for (int i = 0; i < n - 1; i++)
            for (int j = 0; j < n - 1; j++)
                for (int k = 0; k < n - 1; k++)
                {
                    bool anyIn = false, anyOut = false;
                    for (int c = 0; c < 8; c++)
                    {
                        var o = CubeCorners[c];
                        corner[c] = ((i + o[0]) * n + (j + o[1])) * n + (k + o[2]);
                        if (values[corner[c]] < level) anyIn = true; else anyOut = true;
                    }
                    if (!anyIn || !anyOut) continue;
                    foreach (var tet in Tetrahedra)
                    {
                        int inside = 0;
                        for (int q = 0; q < 4; q++)
                        {
                            ids[q] = corner[tet[q]];
                            v[q] = values[ids[q]];
                            if (v[q] < level) inside++;
                        }
                        if (inside == 0 || inside == 4) continue;
                        // Split the corners into inside and outside sets.
                        int ni = 0, no = 0;
                        for (int q = 0; q < 4; q++) { if (v[q] < level) ins[ni++] = q; else outs[no++] = q; }
                        var inC = Vector3.Zero; var outC = Vector3.Zero;
                        for (int q = 0; q < ni; q++) inC += Point(ids[ins[q]]);
                        for (int q = 0; q < no; q++) outC += Point(ids[outs[q]]);
                        var outward = outC / no - inC / ni;

                        int Vert(int a, int b)
                        {
                            int ga = ids[a], gb = ids[b];
                            long key = ga < gb ? ga * total + gb : gb * total + ga;
                            if (!edgeVertex.TryGetValue(key, out int idx))
                            {
                                float va = values[ga], vb = values[gb];
                                float t = MarchingCubes.Crossing(va, vb, level);
                                idx = positions.Count;
                                positions.Add(Vector3.Lerp(Point(ga), Point(gb), t));
                                edgeVertex[key] = idx;
                            }
                            return idx;
                        }

                        void Tri(int a, int b, int c)
                        {
                            if (a == b || b == c || a == c) return;
                            var nrm = Vector3.Cross(positions[b] - positions[a], positions[c] - positions[a]);
                            if (Vector3.Dot(nrm, outward) < 0) (b, c) = (c, b);
                            indices.Add(a); indices.Add(b); indices.Add(c);
                        }

                        if (ni == 1)
                            Tri(Vert(ins[0], outs[0]), Vert(ins[0], outs[1]), Vert(ins[0], outs[2]));
                        else if (ni == 3)
                            Tri(Vert(outs[0], ins[0]), Vert(outs[0], ins[1]), Vert(outs[0], ins[2]));
                        else
                        {
                            int a = Vert(ins[0], outs[0]), b = Vert(ins[0], outs[1]), c = Vert(ins[1], outs[1]), d = Vert(ins[1], outs[0]);
                            Tri(a, b, c);
                            Tri(a, c, d);
                        }
                    }
                }
        return (positions, indices);
    }
}
