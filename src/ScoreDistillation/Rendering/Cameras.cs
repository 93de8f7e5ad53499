using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// Camera construction in the reference convention (threestudio <c>uncond.py</c>): world +z up, position
/// (d·cos e·cos a, d·cos e·sin a, d·sin e), looking at a centre, camera-to-world columns [right, up, −lookat, position].
/// </summary>
public static class Cameras
{
    /// <summary>Camera positions [B, 3] from elevation and azimuth in degrees and distance (all [B]).</summary>
    public static Tensor Positions(Tensor elevationDeg, Tensor azimuthDeg, Tensor distance)
    {
        ArgumentNullException.ThrowIfNull(elevationDeg);
        ArgumentNullException.ThrowIfNull(azimuthDeg);
        ArgumentNullException.ThrowIfNull(distance);
        using var scope = NewDisposeScope();
        var e = elevationDeg * (Math.PI / 180.0);
        var a = azimuthDeg * (Math.PI / 180.0);
        return stack(new[] { distance * e.cos() * a.cos(), distance * e.cos() * a.sin(), distance * e.sin() }, -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Look-at camera-to-world matrices [B, 4, 4] for positions [B, 3] looking at <paramref name="center"/> ([B, 3] or
    /// [3], default origin) with world up <paramref name="up"/> ([B, 3] or [3], default +z).
    /// </summary>
    public static Tensor LookAt(Tensor positions, Tensor? center = null, Tensor? up = null)
    {
        ArgumentNullException.ThrowIfNull(positions);
        if (positions.dim() != 2 || positions.shape[1] != 3)
            throw new ArgumentException($"Positions must be [B, 3], got [{string.Join(", ", positions.shape)}].", nameof(positions));
        using var scope = NewDisposeScope();
        long b = positions.shape[0];
        var c = center is null ? zeros_like(positions) : center.to(positions.dtype, positions.device).expand(b, 3);
        var u = up is null
            ? tensor(new double[] { 0, 0, 1 }, dtype: positions.dtype, device: positions.device).expand(b, 3)
            : up.to(positions.dtype, positions.device).expand(b, 3);
        var lookat = nn.functional.normalize(c - positions, dim: -1);
        var right = nn.functional.normalize(linalg.cross(lookat, u, dim: -1), dim: -1);
        var trueUp = nn.functional.normalize(linalg.cross(right, lookat, dim: -1), dim: -1);
        var rot = stack(new[] { right, trueUp, -lookat }, -1);                 // [B, 3, 3] columns
        var top = cat(new[] { rot, positions.unsqueeze(-1) }, -1);             // [B, 3, 4]
        var bottom = tensor(new double[] { 0, 0, 0, 1 }, dtype: positions.dtype, device: positions.device).expand(b, 1, 4);
        return cat(new[] { top, bottom }, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Focal length in pixels, 0.5·H / tan(fovy/2), for vertical field of view in degrees [B].</summary>
    public static Tensor FocalLength(Tensor fovYDeg, int height)
    {
        ArgumentNullException.ThrowIfNull(fovYDeg);
        if (height <= 0) throw new ArgumentOutOfRangeException(nameof(height), height, "Image height must be positive.");
        using var scope = NewDisposeScope();
        return (0.5 * height / (fovYDeg * (Math.PI / 360.0)).tan()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Pinhole intrinsics [B, 3, 3] (fx = fy = focal, principal point at the image centre) for fovy in degrees [B].
    /// </summary>
    public static Tensor Intrinsics(Tensor fovYDeg, int height, int width)
    {
        if (width <= 0) throw new ArgumentOutOfRangeException(nameof(width), width, "Image width must be positive.");
        using var scope = NewDisposeScope();
        var f = FocalLength(fovYDeg, height);
        var z = zeros_like(f);
        var o = ones_like(f);
        var cx = full_like(f, width / 2.0);
        var cy = full_like(f, height / 2.0);
        return stack(new[] { f, z, cx, z, f, cy, z, z, o }, -1).view(-1, 3, 3).MoveToOuterDisposeScope();
    }

    /// <summary>A camera batch from spherical coordinates (degrees) and fovy (degrees), all [B], looking at the origin.</summary>
    public static CameraBatch FromSpherical(Tensor elevationDeg, Tensor azimuthDeg, Tensor distance, Tensor fovYDeg)
    {
        ArgumentNullException.ThrowIfNull(fovYDeg);
        using var scope = NewDisposeScope();
        var pos = Positions(elevationDeg, azimuthDeg, distance);
        var c2w = LookAt(pos);
        var batch = new CameraBatch(c2w, fovYDeg.detach().clone(), elevationDeg.detach().clone(), azimuthDeg.detach().clone(), distance.detach().clone());
        return MoveToOuter(batch);
    }

    internal static CameraBatch MoveToOuter(CameraBatch batch)
    {
        batch.CameraToWorld.MoveToOuterDisposeScope();
        batch.FovY.MoveToOuterDisposeScope();
        batch.Elevation.MoveToOuterDisposeScope();
        batch.Azimuth.MoveToOuterDisposeScope();
        batch.Distance.MoveToOuterDisposeScope();
        return batch;
    }

    /// <summary>
    /// An evaluation orbit: <paramref name="count"/> views at a fixed elevation, distance and fovy with azimuths evenly
    /// spaced from <paramref name="startAzimuthDeg"/>. <paramref name="closed"/> = false gives the validation layout
    /// (360° exclusive, no repeated view); true gives the reference test layout <c>linspace(0, 360, n)</c> (first and last coincide).
    /// </summary>
    public static CameraBatch Orbit(int count, double elevationDeg = 15, double distance = 1.5, double fovYDeg = 70,
        bool closed = false, double startAzimuthDeg = 0, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "An orbit needs at least one view.");
        if (distance <= 0) throw new ArgumentOutOfRangeException(nameof(distance), distance, "Camera distance must be positive.");
        using var scope = NewDisposeScope();
        var azimuth = closed
            ? linspace(0, 360, count, dtype: ScalarType.Float64)
            : linspace(0, 360, count + 1, dtype: ScalarType.Float64).narrow(0, 0, count);
        azimuth = (azimuth + startAzimuthDeg).to(dtype, device ?? CPU);
        var e = full(count, elevationDeg, dtype: dtype, device: device ?? CPU);
        var d = full(count, distance, dtype: dtype, device: device ?? CPU);
        var f = full(count, fovYDeg, dtype: dtype, device: device ?? CPU);
        return MoveToOuter(FromSpherical(e, azimuth, d, f));
    }
}
