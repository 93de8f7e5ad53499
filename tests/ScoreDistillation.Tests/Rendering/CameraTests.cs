using FluentAssertions;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

public class CameraTests
{
    static CameraBatch Some()
    {
        var e = tensor(new[] { 15f, -10f, 45f, 0f, 30f });
        var a = tensor(new[] { 0f, 90f, -135f, 180f, 33f });
        var d = tensor(new[] { 1.5f, 1.0f, 1.2f, 3.0f, 2.0f });
        var f = tensor(new[] { 70f, 40f, 55f, 40f, 60f });
        return Cameras.FromSpherical(e, a, d, f);
    }

    [Fact]
    public void PositionFollowsReferenceFormula()
    {
        using var scope = NewDisposeScope();
        using var cams = Some();
        var e = cams.Elevation.to(ScalarType.Float64) * Math.PI / 180;
        var a = cams.Azimuth.to(ScalarType.Float64) * Math.PI / 180;
        var d = cams.Distance.to(ScalarType.Float64);
        var expected = stack(new[] { d * e.cos() * a.cos(), d * e.cos() * a.sin(), d * e.sin() }, -1);
        TensorAssert.Close(cams.CameraToWorld.narrow(1, 0, 3).select(2, 3), expected, atol: 1e-5);
        // Azimuth 0, elevation 0 sits on +x; azimuth 90 on +y; positive elevation is +z.
        using var c = Cameras.FromSpherical(tensor(new[] { 0f, 0f, 90f - 1e-3f }), tensor(new[] { 0f, 90f, 0f }), tensor(new[] { 2f, 2f, 2f }), tensor(new[] { 40f, 40f, 40f }));
        TensorAssert.Close(c.CameraToWorld.narrow(1, 0, 3).select(2, 3), tensor(new[,] { { 2f, 0f, 0f }, { 0f, 2f, 0f }, { 0f, 0f, 2f } }), atol: 1e-4);
    }

    [Fact]
    public void CameraToWorldIsOrthonormalRightHandedAndLooksAtOrigin()
    {
        using var scope = NewDisposeScope();
        using var cams = Some();
        var c2w = cams.CameraToWorld.to(ScalarType.Float64);
        var rot = c2w.narrow(1, 0, 3).narrow(2, 0, 3);
        TensorAssert.Close(rot.transpose(1, 2).bmm(rot), eye(3, dtype: ScalarType.Float64).expand(5, 3, 3), atol: 1e-5);
        TensorAssert.Close(linalg.det(rot), ones(5, dtype: ScalarType.Float64), atol: 1e-5);
        TensorAssert.Close(c2w.select(1, 3), tensor(new double[] { 0, 0, 0, 1 }).expand(5, 4), atol: 0);
        // Camera looks down its −z axis: column 2 is −lookat, so −col2 points from the position to the origin.
        var pos = c2w.narrow(1, 0, 3).select(2, 3);
        var forward = -c2w.narrow(1, 0, 3).select(2, 2);
        TensorAssert.Close(forward, nn.functional.normalize(-pos, dim: -1), atol: 1e-5);
        // Up column has a non-negative world-z component (+z up) and right is horizontal.
        (c2w.narrow(1, 2, 1).select(2, 1) >= 0).all().item<bool>().Should().BeTrue();
        c2w.narrow(1, 2, 1).select(2, 0).abs().max().item<double>().Should().BeLessThan(1e-6);
    }

    [Fact]
    public void IntrinsicsAndPixelCentreRays()
    {
        using var scope = NewDisposeScope();
        var fovy = tensor(new[] { 60f });
        double f = 0.5 * 64 / Math.Tan(Math.PI / 6);
        Cameras.FocalLength(fovy, 64).item<float>().Should().BeApproximately((float)f, 1e-3f);
        var k = Cameras.Intrinsics(fovy, 64, 32);
        TensorAssert.Close(k[0], tensor(new[,] { { f, 0, 16 }, { 0, f, 32 }, { 0, 0, 1 } }).to(ScalarType.Float32), atol: 1e-3);

        var dirs = RayBundle.CameraDirections(tensor(new[] { 2f }), 2, 4);
        // Pixel (row 0, col 0) centre is at (0.5, 0.5): x = (0.5 − 2)/2, y = −(0.5 − 1)/2.
        TensorAssert.Close(dirs[0, 0, 0], tensor(new[] { -0.75f, 0.25f, -1f }));
        TensorAssert.Close(dirs[0, 1, 3], tensor(new[] { 0.75f, -0.25f, -1f }));

        using var cams = Cameras.Orbit(3, elevationDeg: 15, distance: 1.5, fovYDeg: 70);
        using var rays = RayBundle.FromCameras(cams, 1, 1);
        // The single pixel of a 1×1 image is the optical axis: it points at the origin from the camera position.
        var pos = cams.CameraToWorld.narrow(1, 0, 3).select(2, 3);
        TensorAssert.Close(rays.Directions.view(3, 3), nn.functional.normalize(-pos, dim: -1), atol: 1e-5);
        TensorAssert.Close(rays.Origins.view(3, 3), pos);
        using var big = RayBundle.FromCameras(cams, 8, 6);
        TensorAssert.Close(big.Directions.norm(-1), ones(3, 8, 6), atol: 1e-5);
        // Top row of the image looks higher (larger world z) than the bottom row.
        (big.Directions[.., 0, .., 2] > big.Directions[.., 7, .., 2]).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void OrbitLayouts()
    {
        using var scope = NewDisposeScope();
        using var open = Cameras.Orbit(4, elevationDeg: 15, distance: 1.2, fovYDeg: 70);
        TensorAssert.Close(open.Azimuth, tensor(new[] { 0f, 90f, 180f, 270f }));
        TensorAssert.Close(open.Elevation, full(4, 15f));
        TensorAssert.Close(open.Distance, full(4, 1.2f));
        TensorAssert.Close(open.FovY, full(4, 70f));
        using var closed = Cameras.Orbit(5, closed: true);
        TensorAssert.Close(closed.Azimuth, tensor(new[] { 0f, 90f, 180f, 270f, 360f }));
        FluentActions.Invoking(() => Cameras.Orbit(0)).Should().Throw<ArgumentOutOfRangeException>();
    }
}
