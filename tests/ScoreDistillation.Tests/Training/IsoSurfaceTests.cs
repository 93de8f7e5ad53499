using System.Numerics;
using FluentAssertions;
using ScoreDistillation.Outputs;
using Xunit;

namespace ScoreDistillation.Tests.Training;

public sealed class IsoSurfaceTests
{
    const float Min = -1f, Max = 1.2f;
    static readonly Vector3 Center = new(0.07f, -0.04f, 0.11f);

    static float[] Grid(int n, Func<Vector3, float> f, float min = Min, float max = Max)
    {
        var values = new float[n * n * n];
        float step = (max - min) / (n - 1);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < n; k++)
                    values[(i * n + j) * n + k] = f(new Vector3(min + i * step, min + j * step, min + k * step));
        return values;
    }

    static float Step(int n) => (Max - Min) / (n - 1);

    static float SphereSdf(Vector3 p, float r) => (p - Center).Length() - r;

    static float BoxSdf(Vector3 p, Vector3 half) => BoxSdf(p, Center, half);

    static float BoxSdf(Vector3 p, Vector3 center, Vector3 half)
    {
        var q = Vector3.Abs(p - center) - half;
        return Vector3.Max(q, Vector3.Zero).Length() + MathF.Min(MathF.Max(q.X, MathF.Max(q.Y, q.Z)), 0);
    }

    static float TorusSdf(Vector3 p, float major, float minor)
    {
        var d = p - Center;
        float ring = MathF.Sqrt(d.X * d.X + d.Z * d.Z) - major;
        return MathF.Sqrt(ring * ring + d.Y * d.Y) - minor;
    }

    /// <summary>Topology and measures of a triangle mesh; asserts it is a closed, consistently oriented 2-manifold.</summary>
    sealed record Stats(int Vertices, int Edges, int Triangles, double Volume, double Area)
    {
        public int Euler => Vertices - Edges + Triangles;
    }

    static Stats ClosedManifold(List<Vector3> positions, List<int> indices)
    {
        indices.Should().NotBeEmpty();
        (indices.Count % 3).Should().Be(0);
        indices.Should().OnlyContain(i => i >= 0 && i < positions.Count);
        indices.Distinct().Should().HaveCount(positions.Count, "every vertex is used by some triangle");
        positions.Should().OnlyContain(p => float.IsFinite(p.X) && float.IsFinite(p.Y) && float.IsFinite(p.Z));

        // Directed edge counts, and the link of every vertex (the edge opposite to it in each of its triangles).
        var directed = new Dictionary<(int, int), int>();
        var link = new Dictionary<int, Dictionary<int, int>>();
        int degenerate = 0, fanClashes = 0;
        double volume = 0, area = 0;
        for (int t = 0; t < indices.Count; t += 3)
        {
            int a = indices[t], b = indices[t + 1], c = indices[t + 2];
            if (a == b || b == c || c == a) degenerate++;
            foreach (var (u, v, w) in new[] { (a, b, c), (b, c, a), (c, a, b) })
            {
                directed[(u, v)] = directed.GetValueOrDefault((u, v)) + 1;
                if (!link.TryGetValue(u, out var l)) link[u] = l = new Dictionary<int, int>();
                if (!l.TryAdd(v, w)) fanClashes++;
            }
            Vector3 pa = positions[a], pb = positions[b], pc = positions[c];
            volume += Vector3.Dot(pa, Vector3.Cross(pb, pc)) / 6.0;
            area += Vector3.Cross(pb - pa, pc - pa).Length() / 2.0;
        }
        degenerate.Should().Be(0, "no triangle repeats a vertex index");
        fanClashes.Should().Be(0, "no two triangles leave a vertex along the same edge");
        // Every directed edge occurs once and so does its reverse: closed, every edge in exactly two triangles, and the
        // two triangles traverse it in opposite directions (consistent orientation).
        directed.Values.Should().OnlyContain(c => c == 1, "a directed edge in two triangles means inconsistent orientation or a non-manifold edge");
        directed.Keys.Count(e => !directed.ContainsKey((e.Item2, e.Item1))).Should().Be(0, "every edge is shared by exactly two triangles");
        // The link of every vertex is one cycle (a disk around the vertex), not several fans touching at the vertex.
        int pinched = 0;
        foreach (var l in link.Values)
        {
            int start = l.Keys.First(), cur = start, length = 0;
            bool linked;
            do { length++; linked = l.TryGetValue(cur, out cur); } while (linked && cur != start && length <= l.Count);
            if (!linked || cur != start || length != l.Count) pinched++;
        }
        pinched.Should().Be(0, "the triangles around every vertex form a single closed fan");
        return new Stats(positions.Count, directed.Count / 2, indices.Count / 3, volume, area);
    }

    public static TheoryData<int> Resolutions => new() { 9, 16, 23, 40, 64 };

    [Theory]
    [MemberData(nameof(Resolutions))]
    public void Sphere_is_a_closed_outward_genus_zero_surface_with_the_right_size(int n)
    {
        const float r = 0.63f;
        var (pos, idx) = IsoSurface.Extract(Grid(n, p => SphereSdf(p, r)), n, Min, Max);
        var s = ClosedManifold(pos, idx);
        s.Euler.Should().Be(2);
        float h = Step(n);
        pos.Should().OnlyContain(p => MathF.Abs((p - Center).Length() - r) < h, "vertices lie within one cell of the sphere");
        pos.Max(p => MathF.Abs((p - Center).Length() - r)).Should().BeLessThan(0.1f * h, "linear interpolation of a distance is accurate");
        // The polyhedron is (nearly) inscribed, so it is slightly small, by O((h/r)²): 3 % at 16³, 0.2 % at 64³.
        double exact = 4.0 / 3 * Math.PI * r * r * r, exactArea = 4 * Math.PI * r * r, relative = (h / r) * (h / r);
        s.Volume.Should().BePositive("triangles are counter-clockwise seen from outside");
        s.Volume.Should().BeInRange(exact * (1 - relative), exact * 1.002);
        s.Area.Should().BeInRange(exactArea * (1 - 0.5 * relative), exactArea * 1.002);
        if (n >= 23) s.Volume.Should().BeApproximately(exact, 0.02 * exact);
        // Marching cubes emits at most five triangles per cube, and far fewer than tetrahedra.
        var (_, tetIdx) = IsoSurface.Extract(Grid(n, p => SphereSdf(p, r)), n, Min, Max, 0, IsoSurfaceMethod.MarchingTetrahedra);
        idx.Count.Should().BeLessThan(tetIdx.Count);
    }

    [Fact]
    public void Volume_converges_to_the_sphere_volume()
    {
        const float r = 0.63f;
        double exact = 4.0 / 3 * Math.PI * r * r * r;
        var errors = new[] { 12, 24, 48 }.Select(n =>
        {
            var (pos, idx) = IsoSurface.Extract(Grid(n, p => SphereSdf(p, r)), n, Min, Max);
            return Math.Abs(ClosedManifold(pos, idx).Volume - exact) / exact;
        }).ToArray();
        errors[1].Should().BeLessThan(errors[0] / 3, "the error is second order in the cell size");
        errors[2].Should().BeLessThan(errors[1] / 3, "the error is second order in the cell size");
        errors[2].Should().BeLessThan(0.005);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Box_is_closed_with_the_right_volume_and_area(bool facesOnGridPlanes)
    {
        const int n = 45;
        float h = Step(n);
        Vector3 center, size;
        float[] values;
        if (facesOnGridPlanes)
        {
            // Computed in grid units with small integers, so the values on the faces are exactly 0 (= level, outside).
            var c = new Vector3(20, 23, 19);
            var half = new Vector3(11, 8, 13);
            values = new float[n * n * n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++)
                        values[(i * n + j) * n + k] = BoxSdf(new Vector3(i, j, k), c, half);
            values.Should().Contain(0f);
            center = new Vector3(Min) + h * c;
            size = h * half;
        }
        else
        {
            center = Center;
            size = new Vector3(0.5f, 0.4f, 0.55f);
            values = Grid(n, p => BoxSdf(p, center, size));
        }
        var (pos, idx) = IsoSurface.Extract(values, n, Min, Max);
        var s = ClosedManifold(pos, idx);
        s.Euler.Should().Be(2);
        var full = 2 * size;
        double volume = full.X * full.Y * full.Z, area = 2 * (full.X * full.Y + full.Y * full.Z + full.Z * full.X);
        // Flat faces are exact (the SDF is linear there); only the box edges are chamfered, by legs of at most a cell,
        // plus a little more at the eight corners.
        double edges = 4 * (full.X + full.Y + full.Z);
        s.Volume.Should().BeInRange(volume - h * h / 2 * edges - 8 * h * h * h, volume * 1.0001);
        s.Area.Should().BeInRange(area - (2 - Math.Sqrt(2)) * h * edges - 8 * h * h, area * 1.0001);
        s.Volume.Should().BeApproximately(volume, 0.03 * volume);
        pos.Should().OnlyContain(p => MathF.Abs(BoxSdf(p, center, size)) < h);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(56)]
    public void Torus_has_euler_characteristic_zero(int n)
    {
        const float major = 0.6f, minor = 0.24f;
        var (pos, idx) = IsoSurface.Extract(Grid(n, p => TorusSdf(p, major, minor)), n, Min, Max);
        var s = ClosedManifold(pos, idx);
        s.Euler.Should().Be(0);
        double volume = 2 * Math.PI * Math.PI * major * minor * minor, area = 4 * Math.PI * Math.PI * major * minor;
        s.Volume.Should().BeApproximately(volume, 0.04 * volume);
        s.Area.Should().BeApproximately(area, 0.04 * area);
        pos.Should().OnlyContain(p => MathF.Abs(TorusSdf(p, major, minor)) < Step(n));
    }

    [Fact]
    public void Two_separate_spheres_give_two_components()
    {
        const int n = 30;
        var other = Center + new Vector3(0.5f, 0.45f, 0.4f);
        var (pos, idx) = IsoSurface.Extract(Grid(n, p => MathF.Min(SphereSdf(p, 0.35f), (p - other).Length() - 0.25f)), n, Min, Max);
        ClosedManifold(pos, idx).Euler.Should().Be(4);
    }

    [Theory]
    [InlineData(IsoSurfaceMethod.MarchingCubes)]
    [InlineData(IsoSurfaceMethod.MarchingTetrahedra)]
    public void A_grid_entirely_inside_or_outside_gives_an_empty_mesh(IsoSurfaceMethod method)
    {
        foreach (float v in new[] { -1f, 1f, 0f, float.PositiveInfinity, float.NegativeInfinity })
        {
            var (pos, idx) = IsoSurface.Extract(Enumerable.Repeat(v, 27).ToArray(), 3, -1, 1, 0, method);
            pos.Should().BeEmpty("value {0}", v);
            idx.Should().BeEmpty();
        }
    }

    [Fact]
    public void A_single_inside_point_gives_a_closed_octahedron()
    {
        // One inside grid point surrounded by outside points: six vertices (one per incident grid edge), eight triangles.
        var values = Enumerable.Repeat(1f, 27).ToArray();
        values[(1 * 3 + 1) * 3 + 1] = -1f;
        var (pos, idx) = IsoSurface.Extract(values, 3, -1, 1);
        var s = ClosedManifold(pos, idx);
        (s.Vertices, s.Triangles, s.Euler).Should().Be((6, 8, 2));
        pos.Should().OnlyContain(p => MathF.Abs(p.Length() - 0.5f) < 1e-6f, "the crossing is halfway along each edge");
        s.Volume.Should().BeApproximately(4.0 / 3 * 0.125, 1e-6);
    }

    [Fact]
    public void Vertices_interpolate_linearly_along_grid_edges()
    {
        // A linear field is reproduced exactly by linear interpolation, so every vertex lies on the plane.
        const int n = 11;
        var normal = Vector3.Normalize(new Vector3(1, 2, -3));
        var (pos, idx) = IsoSurface.Extract(Grid(n, p => Vector3.Dot(p, normal) - 0.05f), n, Min, Max, 0.1f);
        pos.Should().NotBeEmpty();
        pos.Should().OnlyContain(p => MathF.Abs(Vector3.Dot(p, normal) - 0.15f) < 1e-5f);
        for (int t = 0; t < idx.Count; t += 3)
        {
            var nrm = Vector3.Cross(pos[idx[t + 1]] - pos[idx[t]], pos[idx[t + 2]] - pos[idx[t]]);
            Vector3.Dot(nrm, normal).Should().BeGreaterThan(0, "normals point towards larger values");
        }
    }

    [Fact]
    public void Infinite_values_put_the_vertex_at_the_finite_end()
    {
        var values = Enumerable.Repeat(float.PositiveInfinity, 27).ToArray();
        values[(1 * 3 + 1) * 3 + 1] = -1f;
        var (pos, idx) = IsoSurface.Extract(values, 3, -1, 1);
        ClosedManifold(pos, idx);
        pos.Should().OnlyContain(p => p == Vector3.Zero);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Random_fields_with_every_ambiguous_case_still_give_closed_oriented_manifolds(int seed)
    {
        // Noise hits all 256 cases, including the ambiguous faces and cube interiors; the outer layer is outside so the
        // surface is closed.
        const int n = 14;
        var rng = new Random(seed);
        var values = new float[n * n * n];
        var cases = new HashSet<int>();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < n; k++)
                {
                    bool border = i == 0 || j == 0 || k == 0 || i == n - 1 || j == n - 1 || k == n - 1;
                    values[(i * n + j) * n + k] = border ? 1f : (float)(rng.NextDouble() * 2 - 1.1);
                }
        for (int i = 0; i < n - 1; i++)
            for (int j = 0; j < n - 1; j++)
                for (int k = 0; k < n - 1; k++)
                {
                    int c = 0;
                    for (int q = 0; q < 8; q++)
                        if (values[((i + MarchingCubes.Corners[q, 0]) * n + j + MarchingCubes.Corners[q, 1]) * n + k + MarchingCubes.Corners[q, 2]] < 0)
                            c |= 1 << q;
                    cases.Add(c);
                }
        cases.Count.Should().BeGreaterThan(200);
        var (pos, idx) = IsoSurface.Extract(values, n, 0, 1);
        var s = ClosedManifold(pos, idx);
        (s.Euler % 2).Should().Be(0);
        s.Volume.Should().BePositive();
        s.Volume.Should().BeLessThan(1);
    }

    [Theory]
    [InlineData("sphere")]
    [InlineData("torus")]
    [InlineData("box")]
    public void Both_methods_agree_on_the_volume(string shape)
    {
        const int n = 36;
        Func<Vector3, float> f = shape switch
        {
            "sphere" => p => SphereSdf(p, 0.6f),
            "torus" => p => TorusSdf(p, 0.6f, 0.25f),
            _ => p => BoxSdf(p, new Vector3(0.5f, 0.4f, 0.6f)),
        };
        var values = Grid(n, f);
        var (cp, ci) = IsoSurface.Extract(values, n, Min, Max, 0, IsoSurfaceMethod.MarchingCubes);
        var (tp, ti) = IsoSurface.Extract(values, n, Min, Max, 0, IsoSurfaceMethod.MarchingTetrahedra);
        var cubes = ClosedManifold(cp, ci);
        var tets = ClosedManifold(tp, ti);
        cubes.Euler.Should().Be(tets.Euler);
        cubes.Volume.Should().BeApproximately(tets.Volume, 0.02 * tets.Volume);
    }

    [Fact]
    public void Density_grids_are_extracted_with_the_negated_threshold()
    {
        // A Gaussian blob density; the surface density = 0.5 is a sphere of radius sqrt(ln 2) · 0.4.
        const int n = 32;
        var values = Grid(n, p => -MathF.Exp(-(p - Center).LengthSquared() / (0.4f * 0.4f)));
        var (pos, idx) = IsoSurface.Extract(values, n, Min, Max, -0.5f);
        var s = ClosedManifold(pos, idx);
        s.Euler.Should().Be(2);
        double r = Math.Sqrt(Math.Log(2)) * 0.4;
        s.Volume.Should().BeApproximately(4.0 / 3 * Math.PI * r * r * r, 0.05 * 4.0 / 3 * Math.PI * r * r * r);
    }

    [Fact]
    public void Bad_input_is_rejected()
    {
        var ok = new float[8];
        FluentActions.Invoking(() => IsoSurface.Extract(null!, 2, -1, 1)).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => IsoSurface.Extract(new float[1], 1, -1, 1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("resolution");
        FluentActions.Invoking(() => IsoSurface.Extract(new float[9], 2, -1, 1)).Should().Throw<ArgumentException>().WithParameterName("values");
        FluentActions.Invoking(() => IsoSurface.Extract(ok, 2, 1, 1)).Should().Throw<ArgumentException>().WithMessage("*min < max*");
        FluentActions.Invoking(() => IsoSurface.Extract(ok, 2, 1, -1)).Should().Throw<ArgumentException>().WithMessage("*min < max*");
        FluentActions.Invoking(() => IsoSurface.Extract(ok, 2, float.NegativeInfinity, 1)).Should().Throw<ArgumentException>();
        FluentActions.Invoking(() => IsoSurface.Extract(ok, 2, -1, 1, float.NaN)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("level");
        FluentActions.Invoking(() => IsoSurface.Extract(ok, 2, -1, 1, 0, (IsoSurfaceMethod)7)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("method");
        foreach (var method in new[] { IsoSurfaceMethod.MarchingCubes, IsoSurfaceMethod.MarchingTetrahedra })
        {
            var nan = Grid(4, p => p.Length() - 0.5f);
            nan[(2 * 4 + 1) * 4 + 3] = float.NaN;
            FluentActions.Invoking(() => IsoSurface.Extract(nan, 4, Min, Max, 0, method)).Should().Throw<ArgumentException>()
                .WithParameterName("values").WithMessage("values[39] (grid point i = 2, j = 1, k = 3) is NaN*");
        }
    }

    // ---- The tables themselves ----

    static readonly int[][] Faces =
    {
        new[] { 0, 1, 2, 3 }, new[] { 4, 5, 6, 7 }, new[] { 0, 1, 5, 4 },
        new[] { 3, 2, 6, 7 }, new[] { 0, 3, 7, 4 }, new[] { 1, 2, 6, 5 },
    };

    static int EdgeBetween(int a, int b)
    {
        for (int e = 0; e < 12; e++)
            if ((MarchingCubes.Edges[e, 0] == a && MarchingCubes.Edges[e, 1] == b) || (MarchingCubes.Edges[e, 0] == b && MarchingCubes.Edges[e, 1] == a))
                return e;
        throw new InvalidOperationException();
    }

    static Vector3 Corner(int c) => new(MarchingCubes.Corners[c, 0], MarchingCubes.Corners[c, 1], MarchingCubes.Corners[c, 2]);

    static Vector3 EdgeMidpoint(int e) => (Corner(MarchingCubes.Edges[e, 0]) + Corner(MarchingCubes.Edges[e, 1])) / 2;

    [Fact]
    public void Cube_layout_is_the_classic_one()
    {
        MarchingCubes.EdgeTable.Should().HaveCount(256);
        MarchingCubes.TriangleTable.GetLength(0).Should().Be(256);
        MarchingCubes.TriangleTable.GetLength(1).Should().Be(16);
        for (int e = 0; e < 12; e++)
            (Corner(MarchingCubes.Edges[e, 0]) - Corner(MarchingCubes.Edges[e, 1])).Length().Should().Be(1, "edge {0} joins neighbouring corners", e);
        // A few entries everybody knows.
        MarchingCubes.EdgeTable[1].Should().Be(0x109);
        MarchingCubes.EdgeTable[2].Should().Be(0x203);
        MarchingCubes.EdgeTable[255].Should().Be(0);
        MarchingCubes.EdgeTable[0x0f].Should().Be(0xf00);
    }

    [Fact]
    public void Edge_table_marks_exactly_the_edges_whose_corners_differ()
    {
        for (int c = 0; c < 256; c++)
        {
            int mask = 0;
            for (int e = 0; e < 12; e++)
                if (((c >> MarchingCubes.Edges[e, 0]) & 1) != ((c >> MarchingCubes.Edges[e, 1]) & 1))
                    mask |= 1 << e;
            MarchingCubes.EdgeTable[c].Should().Be((ushort)mask, "case {0}", c);
        }
    }

    [Fact]
    public void Triangle_table_tiles_every_case_consistently_and_outward()
    {
        int maxTriangles = 0;
        for (int c = 0; c < 256; c++)
        {
            bool Inside(int corner) => ((c >> corner) & 1) == 1;
            int mask = MarchingCubes.EdgeTable[c];
            var tris = new List<(int A, int B, int C)>();
            int t = 0;
            for (; t < 16 && MarchingCubes.TriangleTable[c, t] >= 0; t += 3)
                tris.Add((MarchingCubes.TriangleTable[c, t], MarchingCubes.TriangleTable[c, t + 1], MarchingCubes.TriangleTable[c, t + 2]));
            for (; t < 16; t++) MarchingCubes.TriangleTable[c, t].Should().Be(-1, "case {0} is -1 padded", c);
            maxTriangles = Math.Max(maxTriangles, tris.Count);

            var used = tris.SelectMany(x => new[] { x.A, x.B, x.C }).ToHashSet();
            used.Should().BeEquivalentTo(Enumerable.Range(0, 12).Where(e => (mask >> e & 1) == 1), "case {0} uses exactly its crossed edges", c);

            // Expected boundary: on every face, segments joining its crossed edges; on an ambiguous face each inside
            // corner is cut off on its own. Directed so that the surface faces the outside corners.
            var expected = new HashSet<(int, int)>();
            foreach (var f in Faces)
            {
                var faceNormal = Vector3.Normalize(Vector3.Cross(Corner(f[1]) - Corner(f[0]), Corner(f[3]) - Corner(f[0])));
                var faceCenter = f.Aggregate(Vector3.Zero, (s, q) => s + Corner(q)) / 4;
                if (Vector3.Dot(faceNormal, faceCenter - new Vector3(0.5f)) < 0) faceNormal = -faceNormal;
                var crossed = Enumerable.Range(0, 4).Where(q => Inside(f[q]) != Inside(f[(q + 1) % 4])).ToList();
                var segments = new List<(int P, int Q, int[] Side)>();
                if (crossed.Count == 2)
                {
                    int a = crossed[0], b = crossed[1];
                    segments.Add((EdgeBetween(f[a], f[(a + 1) % 4]), EdgeBetween(f[b], f[(b + 1) % 4]), Enumerable.Range(a + 1, b - a).Select(q => f[q % 4]).ToArray()));
                }
                else if (crossed.Count == 4)
                    for (int q = 0; q < 4; q++)
                        if (Inside(f[q]))
                            segments.Add((EdgeBetween(f[(q + 3) % 4], f[q]), EdgeBetween(f[q], f[(q + 1) % 4]), new[] { f[q] }));
                foreach (var (p, q, side) in segments)
                {
                    var d = EdgeMidpoint(q) - EdgeMidpoint(p);
                    var towardsSide = side.Aggregate(Vector3.Zero, (s, x) => s + Corner(x)) / side.Length - EdgeMidpoint(p);
                    var perp = Vector3.Cross(faceNormal, d);
                    if (Vector3.Dot(perp, towardsSide) < 0) perp = -perp;
                    var outward = Inside(side[0]) ? -perp : perp; // surface normal, from inside to outside
                    // Boundary of a surface with normal N, leaving the cube through the face with normal n, runs along N × n.
                    expected.Add(Vector3.Dot(d, Vector3.Cross(outward, faceNormal)) > 0 ? (p, q) : (q, p));
                }
            }

            var directed = new Dictionary<(int, int), int>();
            foreach (var (a, b, cc) in tris)
                foreach (var e in new[] { (a, b), (b, cc), (cc, a) })
                    directed[e] = directed.GetValueOrDefault(e) + 1;
            directed.Values.Where(k => k != 1).Should().BeEmpty("case {0}: no directed edge twice", c);
            var boundary = directed.Keys.Where(e => !directed.ContainsKey((e.Item2, e.Item1))).ToHashSet();
            boundary.Should().BeEquivalentTo(expected, "case {0}: the triangles' boundary is the face segments, oriented", c);
            foreach (var (a, b) in directed.Keys.Where(e => !boundary.Contains(e)))
                Faces.Should().NotContain(f => Touches(f, a) && Touches(f, b),
                    "case {0}: interior diagonal {1}-{2} must not join two edges of one face (it would coincide with the neighbour's)", c, a, b);

            // Every triangle faces the outside corners (gradient of the trilinear interpolant of ±1 corner values).
            foreach (var (a, b, cc) in tris)
            {
                Vector3 pa = EdgeMidpoint(a), pb = EdgeMidpoint(b), pc = EdgeMidpoint(cc), m = (pa + pb + pc) / 3;
                var grad = Vector3.Zero;
                for (int q = 0; q < 8; q++)
                {
                    var o = Corner(q);
                    var w = new Vector3(o.X == 1 ? m.X : 1 - m.X, o.Y == 1 ? m.Y : 1 - m.Y, o.Z == 1 ? m.Z : 1 - m.Z);
                    var s = Inside(q) ? -1f : 1f;
                    grad += s * new Vector3((o.X == 1 ? 1 : -1) * w.Y * w.Z, (o.Y == 1 ? 1 : -1) * w.X * w.Z, (o.Z == 1 ? 1 : -1) * w.X * w.Y);
                }
                Vector3.Dot(Vector3.Cross(pb - pa, pc - pa), grad).Should().BePositive("case {0}, triangle {1}-{2}-{3} faces outside", c, a, b, cc);
            }
        }
        maxTriangles.Should().Be(5);
    }

    static bool Touches(int[] face, int edge) => face.Contains(MarchingCubes.Edges[edge, 0]) && face.Contains(MarchingCubes.Edges[edge, 1]);
}
