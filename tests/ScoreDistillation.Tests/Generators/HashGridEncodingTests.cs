using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

public class HashGridEncodingTests
{
    // Scales 3, 5.8, 10.56, 18.65 → resolutions 4, 7, 12, 20: level 1 has 343 cells rounded to 344 entries and aliases at
    // the upper corner (x·s + 0.5 reaches s + 0.5 > R − 1), levels 2–3 exceed T = 1024 and are hashed.
    static readonly HashGridOptions Small = new() { Levels = 4, FeaturesPerLevel = 2, Log2TableSize = 10, BaseResolution = 4, PerLevelScale = 1.7 };

    /// <summary>tcnn's per-point computation written out with uint32 arithmetic.</summary>
    static (long[] Rows, float[] Weights) ScalarLookup(HashGridOptions o, float x, float y, float z)
    {
        var rows = new long[o.Levels * 8];
        var weights = new float[o.Levels * 8];
        long offset = 0;
        uint t = 1u << o.Log2TableSize;
        for (int l = 0; l < o.Levels; l++)
        {
            float scale = float.Exp2(l * MathF.Log2((float)o.PerLevelScale)) * o.BaseResolution - 1.0f;
            uint res = (uint)MathF.Ceiling(scale) + 1;
            ulong cells = (ulong)res * res * res;
            uint entries = (uint)Math.Min((cells + 7) / 8 * 8, t);
            bool dense = cells <= entries;
            float[] p = { x * scale + 0.5f, y * scale + 0.5f, z * scale + 0.5f };
            var g = new uint[3];
            var fr = new float[3];
            for (int d = 0; d < 3; d++)
            {
                float fl = MathF.Floor(p[d]);
                g[d] = unchecked((uint)(int)fl);
                fr[d] = p[d] - fl;
            }
            for (int c = 0; c < 8; c++)
            {
                uint bx = (uint)(c >> 2) & 1, by = (uint)(c >> 1) & 1, bz = (uint)c & 1;
                uint px = unchecked(g[0] + bx), py = unchecked(g[1] + by), pz = unchecked(g[2] + bz);
                uint idx = dense
                    ? unchecked(px + py * res + pz * res * res)
                    : unchecked(px ^ (py * 2654435761u) ^ (pz * 805459861u));
                idx %= entries;
                rows[l * 8 + c] = offset + idx;
                float wx = bx == 1 ? fr[0] : 1 - fr[0];
                float wy = by == 1 ? fr[1] : 1 - fr[1];
                float wz = bz == 1 ? fr[2] : 1 - fr[2];
                weights[l * 8 + c] = wx * wy * wz;
            }
            offset += entries;
        }
        return (rows, weights);
    }

    static float[,] TestPoints()
    {
        var rng = new Random(7);
        var pts = new List<float[]>
        {
            new[] { 0f, 0f, 0f }, new[] { 1f, 1f, 1f }, new[] { 0.999f, 0.5f, 0.001f }, new[] { 1f, 0f, 0.5f },
            new[] { -0.3f, 0.2f, 1.4f },   // outside the unit cube: negative grid coordinates wrap as uint32
        };
        for (int i = 0; i < 59; i++) pts.Add(new[] { (float)rng.NextDouble(), (float)rng.NextDouble(), (float)rng.NextDouble() });
        var a = new float[pts.Count, 3];
        for (int i = 0; i < pts.Count; i++) for (int d = 0; d < 3; d++) a[i, d] = pts[i][d];
        return a;
    }

    [Fact]
    public void LevelLayoutFollowsTcnn()
    {
        using var grid = new HashGridEncoding(Small, new Generator(1));
        grid.LevelResolutions.Should().Equal(4L, 7L, 12L, 20L);
        grid.LevelIsDense.Should().Equal(true, true, false, false);
        grid.LevelEntries.Should().Equal(64L, 344L, 1024L, 1024L);
        grid.LevelOffsets.Should().Equal(0L, 64L, 408L, 1432L);
        grid.TableEntries.Should().Be(2456);
        grid.Table.shape.Should().Equal(2456L * 2);
        grid.OutputDims.Should().Be(8);
    }

    [Fact]
    public void RowsAndWeightsEqualScalarComputation()
    {
        using var scope = NewDisposeScope();
        using var grid = new HashGridEncoding(Small, new Generator(1));
        var pts = TestPoints();
        var (rows, weights) = grid.Lookup(tensor(pts));
        var r = rows.to(ScalarType.Int64).data<long>().ToArray();
        var w = weights.data<float>().ToArray();
        int n = pts.GetLength(0);
        bool sawWrap = false;
        for (int i = 0; i < n; i++)
        {
            var (er, ew) = ScalarLookup(Small, pts[i, 0], pts[i, 1], pts[i, 2]);
            for (int k = 0; k < er.Length; k++)
            {
                r[i * er.Length + k].Should().Be(er[k], $"point {i}, level {k / 8}, corner {k % 8}");
                w[i * er.Length + k].Should().BeApproximately(ew[k], 1e-6f, $"point {i}, level {k / 8}, corner {k % 8}");
            }
            // The dense level 1 wraps when the upper corner index reaches its 344 entries.
            var p = new[] { pts[i, 0] * 5.8f + 0.5f, pts[i, 1] * 5.8f + 0.5f, pts[i, 2] * 5.8f + 0.5f };
            if (MathF.Floor(p[0]) + 1 + (MathF.Floor(p[1]) + 1) * 7 + (MathF.Floor(p[2]) + 1) * 49 >= 344) sawWrap = true;
        }
        sawWrap.Should().BeTrue("the test points must exercise the table wrap of a dense level");
        // Weights are a partition of unity per level.
        TensorAssert.Close(weights.sum(-1), ones(n, 4), atol: 1e-6);
    }

    [Fact]
    public void ForwardIsTheWeightedSumOfTableRows()
    {
        using var scope = NewDisposeScope();
        using var grid = new HashGridEncoding(Small, new Generator(1));
        using (no_grad()) grid.Table.copy_(randn(grid.Table.shape, generator: new Generator(3)));
        var pts = TestPoints();
        var enc = grid.forward(tensor(pts)).data<float>().ToArray();
        var table = grid.Table.data<float>().ToArray();
        for (int i = 0; i < pts.GetLength(0); i++)
        {
            var (er, ew) = ScalarLookup(Small, pts[i, 0], pts[i, 1], pts[i, 2]);
            for (int l = 0; l < 4; l++)
                for (int f = 0; f < 2; f++)
                {
                    double expected = 0;
                    for (int c = 0; c < 8; c++) expected += ew[l * 8 + c] * table[er[l * 8 + c] * 2 + f];
                    enc[i * 8 + l * 2 + f].Should().BeApproximately((float)expected, 1e-5f);
                }
        }
    }

    [Fact]
    public void HashedLevelsUseThePrimesOnUint32()
    {
        // A single coarse hashed level: R = 16, 4096 cells > T = 512.
        var o = new HashGridOptions { Levels = 1, FeaturesPerLevel = 1, Log2TableSize = 9, BaseResolution = 16, PerLevelScale = 2 };
        using var scope = NewDisposeScope();
        using var grid = new HashGridEncoding(o);
        grid.LevelIsDense.Should().Equal(false);
        // x = (3.5 − 0.5)/15 etc. lands exactly on grid point (3, 5, 7); corner 0 = 3 ⊕ 5·2654435761 ⊕ 7·805459861 mod 2^32 mod 512.
        var p = tensor(new float[] { 3f / 15f, 5f / 15f, 7f / 15f }).view(1, 3);
        var (rows, _) = grid.Lookup(p);
        uint h = unchecked(3u ^ (5u * 2654435761u) ^ (7u * 805459861u)) % 512u;
        rows[0, 0, 0].item<int>().Should().Be((int)h);
    }

    [Fact]
    public void GradientWrtPointsMatchesFiniteDifferencesInFloat64()
    {
        using var scope = NewDisposeScope();
        using var grid = new HashGridEncoding(Small, new Generator(1));
        grid.to(ScalarType.Float64);
        using (no_grad()) grid.Table.copy_(randn(grid.Table.shape, ScalarType.Float64, generator: new Generator(4)));
        var g = new Generator(5);
        var pts = rand(new long[] { 6, 3 }, ScalarType.Float64, generator: g).mul_(0.9).add_(0.05);
        var proj = randn(new long[] { 6, 8 }, ScalarType.Float64, generator: g);
        Func<Tensor, double> loss = p => { using var s = NewDisposeScope(); return grid.forward(p).mul(proj).sum().item<double>(); };

        var x = pts.clone().requires_grad_(true);
        grid.forward(x).mul(proj).sum().backward();
        var analytic = x.grad!.clone();
        const double eps = 1e-6;
        double worst = 0;
        for (int i = 0; i < 6; i++)
            for (int d = 0; d < 3; d++)
            {
                var plus = pts.clone(); plus[i, d] = plus[i, d] + eps;
                var minus = pts.clone(); minus[i, d] = minus[i, d] - eps;
                double fd = (loss(plus) - loss(minus)) / (2 * eps);
                double a = analytic[i, d].item<double>();
                worst = Math.Max(worst, Math.Abs(fd - a) / Math.Max(1, Math.Abs(fd)));
            }
        worst.Should().BeLessThan(1e-5);

        // The table gradient: finite differences on rows the points use.
        grid.zero_grad();
        grid.forward(pts).mul(proj).sum().backward();
        var tableGrad = grid.Table.grad!;
        var (rows, _) = grid.Lookup(pts);
        foreach (long row in new[] { rows[0, 0, 0].item<int>(), rows[3, 2, 5].item<int>(), rows[5, 3, 7].item<int>() })
        {
            long k = row * 2 + 1;
            double orig;
            using (no_grad()) orig = grid.Table[k].item<double>();
            using (no_grad()) grid.Table[k] = orig + eps;
            double lp = loss(pts);
            using (no_grad()) grid.Table[k] = orig - eps;
            double lm = loss(pts);
            using (no_grad()) grid.Table[k] = orig;
            double fd = (lp - lm) / (2 * eps);
            tableGrad[k].item<double>().Should().BeApproximately(fd, 1e-6);
        }
    }

    [Fact]
    public void InitialisationIsUniformInTcnnRange()
    {
        using var scope = NewDisposeScope();
        using var grid = new HashGridEncoding(Small, new Generator(1));
        grid.Table.abs().max().item<float>().Should().BeLessThanOrEqualTo(1e-4f);
        grid.Table.std().item<float>().Should().BeApproximately((float)(1e-4 / Math.Sqrt(3)), 5e-6f);
        grid.named_parameters().Select(p => p.name).Should().Equal("params");
        grid.state_dict().Keys.Should().Equal("params");
    }

    [Fact]
    public void ReferenceConfigurationLayout()
    {
        using var grid = new HashGridEncoding(HashGridOptions.HyperInstantNgp);
        grid.LevelResolutions.Take(6).Should().Equal(16L, 24L, 34L, 49L, 71L, 102L);
        grid.LevelIsDense.Count(d => d).Should().Be(5);
        grid.LevelEntries.Skip(5).Should().AllSatisfy(e => e.Should().Be(1L << 19));
        grid.LevelResolutions[^1].Should().BeInRange(4096, 4097);
    }
}
