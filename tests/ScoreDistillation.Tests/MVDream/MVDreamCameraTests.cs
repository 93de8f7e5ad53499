using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Diffusion.MVDream;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.MVDream;

public class MVDreamCameraTests
{
    static JsonDocument Doc() => TestVectors.LoadJson("mvdream", "mvdream_cameras.json");

    static float[] Floats(JsonElement rows) =>
        rows.EnumerateArray().SelectMany(r => r.ValueKind == JsonValueKind.Array ? r.EnumerateArray().Select(e => (float)e.GetDouble()) : new[] { (float)r.GetDouble() }).ToArray();

    [Fact]
    public void GetCamera_equals_MVDream_camera_utils()
    {
        using var doc = Doc();
        int cases = 0;
        foreach (var c in doc.RootElement.GetProperty("get_camera_cases").EnumerateArray())
        {
            var a = c.GetProperty("args");
            int n = a.GetProperty("num_frames").GetInt32();
            using var cam = MVDreamCameras.GetCamera(n, a.GetProperty("elevation").GetDouble(), a.GetProperty("azimuth_start").GetDouble(),
                a.GetProperty("azimuth_span").GetDouble(), a.TryGetProperty("blender_coord", out var b) ? b.GetBoolean() : true);
            using var expected = tensor(Floats(c.GetProperty("output_rows"))).reshape(n, 16);
            TensorAssert.Close(cam, expected, rtol: 0, atol: 1e-6, because: c.GetProperty("call").GetString());
            cases++;
        }
        cases.Should().BeGreaterThan(2);
    }

    [Fact]
    public void Our_cameras_convert_like_MVDream_threestudio_without_mutating_the_input()
    {
        using var doc = Doc();
        foreach (var c in doc.RootElement.GetProperty("normalize_camera_cases").EnumerateArray())
        {
            using var c2w = tensor(Floats(c.GetProperty("c2w_input_4x4"))).reshape(1, 4, 4);
            using var before = c2w.clone();
            using var cam = MVDreamCameras.FromCameraToWorld(c2w);
            using var expected = tensor(Floats(c.GetProperty("normalize_camera_output_16"))).reshape(1, 16);
            TensorAssert.Close(cam, expected, rtol: 0, atol: 1e-6);
            TensorAssert.Close(c2w, before, rtol: 0, atol: 0, because: "the caller's cameras must not change");
        }
    }

    [Fact]
    public void Our_azimuth_a_is_MVDream_azimuth_a_plus_90()
    {
        using var scope = NewDisposeScope();
        double e = 15 * Math.PI / 180;
        foreach (double deg in new[] { 0.0, 90, 180, 270 })
        {
            double a = deg * Math.PI / 180, d = 2.0;
            var pos = new[] { d * Math.Cos(e) * Math.Cos(a), d * Math.Cos(e) * Math.Sin(a), d * Math.Sin(e) };
            var look = pos.Select(p => -p / d).ToArray();
            var right = Normalize(Cross(look, new[] { 0.0, 0, 1 }));
            var up = Normalize(Cross(right, look));
            var m = new float[16];
            for (int r = 0; r < 3; r++) { m[r * 4] = (float)right[r]; m[r * 4 + 1] = (float)up[r]; m[r * 4 + 2] = (float)-look[r]; m[r * 4 + 3] = (float)pos[r]; }
            m[15] = 1;
            var ours = MVDreamCameras.FromCameraToWorld(tensor(m).reshape(1, 4, 4));
            var theirs = MVDreamCameras.GetCamera(1, 15, deg + 90);
            TensorAssert.Close(ours, theirs, rtol: 0, atol: 1e-5, because: $"azimuth {deg}");
        }
    }

    static double[] Cross(double[] a, double[] b) => new[] { a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0] };
    static double[] Normalize(double[] v) { double n = Math.Sqrt(v.Sum(x => x * x)); return v.Select(x => x / n).ToArray(); }
}
