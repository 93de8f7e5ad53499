using System.Numerics;
using FluentAssertions;
using ScoreDistillation.Outputs;
using ScoreDistillation.Training;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

public sealed class OutputTests : IDisposable
{
    readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("sd-out-");
    public void Dispose() => _dir.Delete(true);

    static Mesh Sphere(int n = 24, float r = 0.6f)
    {
        var values = new float[n * n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < n; k++)
                {
                    var p = new Vector3(-1 + 2f * i / (n - 1), -1 + 2f * j / (n - 1), -1 + 2f * k / (n - 1));
                    values[(i * n + j) * n + k] = p.Length() - r;
                }
        var (pos, idx) = IsoSurface.Extract(values, n, -1, 1);
        var colors = pos.Select(p => new Vector3(0.5f + 0.5f * p.X / r, 0.2f, 0.8f)).ToList();
        return new Mesh(pos, colors, idx);
    }

    [Fact]
    public void Iso_surface_of_a_sphere_is_closed_outward_and_at_the_right_radius()
    {
        var m = Sphere();
        m.TriangleCount.Should().BeGreaterThan(500);
        m.Positions.Should().OnlyContain(p => Math.Abs(p.Length() - 0.6f) < 0.02f);
        double volume = m.SignedVolume();
        volume.Should().BeApproximately(4.0 / 3 * Math.PI * 0.216, 0.05, "outward orientation gives a positive volume close to the sphere's");
        // Closed: every edge is shared by exactly two triangles.
        var edges = new Dictionary<(int, int), int>();
        for (int t = 0; t < m.Indices.Count; t += 3)
            for (int e = 0; e < 3; e++)
            {
                int a = m.Indices[t + e], b = m.Indices[t + (e + 1) % 3];
                var key = a < b ? (a, b) : (b, a);
                edges[key] = edges.GetValueOrDefault(key) + 1;
            }
        edges.Values.Should().OnlyContain(c => c == 2);
    }

    [Fact]
    public void Glb_and_ply_re_read_with_the_same_geometry()
    {
        var m = Sphere(16);
        var glb = Path.Combine(_dir.FullName, "mesh.glb");
        var ply = Path.Combine(_dir.FullName, "mesh.ply");
        MeshWriter.WriteGlb(m, glb);
        MeshWriter.WritePly(m, ply);
        foreach (var back in new[] { MeshWriter.ReadGlb(glb), MeshWriter.ReadPly(ply) })
        {
            back.Positions.Should().Equal(m.Positions);
            back.Indices.Should().Equal(m.Indices);
            back.SignedVolume().Should().BeApproximately(m.SignedVolume(), 1e-6);
            for (int i = 0; i < m.Colors.Count; i++)
                (back.Colors[i] - m.Colors[i]).Length().Should().BeLessThan(0.01f);
        }
    }

    [Fact]
    public void Turntable_writes_frames_and_a_contact_sheet()
    {
        using var frames = rand(new long[] { 5, 3, 8, 10 });
        var sheet = Path.Combine(_dir.FullName, "sheet.png");
        var paths = ImageWriter.SaveTurntable(frames, Path.Combine(_dir.FullName, "frames"), sheet, columns: 3);
        paths.Should().HaveCount(5).And.OnlyContain(p => File.Exists(p));
        using var bmp = SKBitmap.Decode(sheet);
        bmp.Width.Should().Be(30);
        bmp.Height.Should().Be(16);
        using var frame0 = SKBitmap.Decode(paths[0]);
        var px = frame0.GetPixel(3, 2);
        px.Red.Should().Be((byte)Math.Round(frames[0, 0, 2, 3].item<float>() * 255));
    }

    [Fact]
    public void Metrics_and_curves_are_written()
    {
        var steps = Enumerable.Range(1, 20).Select(i => new TrainingStep(i, 20, 1.0 / i, 0.5 / i, 2.0 + Math.Sin(i), 0.1, new[] { "p" }, new[] { 500L })).ToList();
        var png = Path.Combine(_dir.FullName, "curves.png");
        TrainingReport.WriteCurves(png, steps);
        using (var bmp = SKBitmap.Decode(png)) bmp.Width.Should().Be(900);
        var json = Path.Combine(_dir.FullName, "metrics.json");
        TrainingReport.WriteMetrics(json, new Dictionary<string, object?> { ["iou"] = 0.75, ["prompt"] = "a red cube" });
        File.ReadAllText(json).Should().Contain("\"iou\": 0.75");
    }
}
