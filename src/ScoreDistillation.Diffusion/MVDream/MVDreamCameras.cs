using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>
/// Camera conditioning for MVDream. Our cameras (threestudio convention: z up, position (d·cos e·cos a, d·cos e·sin a, d·sin e))
/// are already in MVDream's "blender" z-up world; MVDream-threestudio only normalises the translation to unit length and flattens
/// the 4×4 camera-to-world matrix row-major to 16 values. In MVDream's own azimuth convention our azimuth a is a + 90°.
/// </summary>
public static class MVDreamCameras
{
    /// <summary>Camera-to-world [N, 4, 4] (our convention) → MVDream camera vectors [N, 16]. The input is not modified.</summary>
    /// <exception cref="ArgumentException">The input is not [N, 4, 4].</exception>
    public static Tensor FromCameraToWorld(Tensor cameraToWorld)
    {
        ArgumentNullException.ThrowIfNull(cameraToWorld);
        if (cameraToWorld.dim() != 3 || cameraToWorld.shape[1] != 4 || cameraToWorld.shape[2] != 4)
            throw new ArgumentException($"MVDream cameras: camera-to-world must be [N, 4, 4], got [{string.Join(", ", cameraToWorld.shape)}].", nameof(cameraToWorld));
        using var scope = NewDisposeScope();
        var rot = cameraToWorld[.., ..3, ..3];
        var t = cameraToWorld[.., ..3, 3..4];
        t = t / (t.norm(1, keepdim: true) + 1e-8);
        var top = cat(new[] { rot, t }, 2);
        var result = cat(new[] { top, cameraToWorld[.., 3..4, ..] }, 1).reshape(-1, 16);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// MVDream's own <c>get_camera</c>: <paramref name="numFrames"/> unit-distance cameras at one elevation, azimuths
    /// <c>start + k·span/numFrames</c> (MVDream's azimuth convention, degrees), in the blender (z-up) world by default. [numFrames, 16].
    /// </summary>
    public static Tensor GetCamera(int numFrames, double elevation = 15, double azimuthStart = 0, double azimuthSpan = 360, bool blenderCoordinates = true)
    {
        if (numFrames < 1) throw new ArgumentOutOfRangeException(nameof(numFrames));
        var rows = new float[numFrames * 16];
        for (int k = 0; k < numFrames; k++)
        {
            double az = (azimuthStart + k * azimuthSpan / numFrames) * Math.PI / 180, el = elevation * Math.PI / 180;
            // OpenGL look-at from MVDream's camera_utils: y up, position (cos e sin a, sin e, cos e cos a).
            double[] pos = { Math.Cos(el) * Math.Sin(az), Math.Sin(el), Math.Cos(el) * Math.Cos(az) };
            double[] fwd = Normalize(new[] { -pos[0], -pos[1], -pos[2] });
            double[] right = Normalize(Cross(fwd, new[] { 0.0, 1, 0 }));
            double[] up = Normalize(Cross(right, fwd));
            var m = new double[4, 4];
            for (int r = 0; r < 3; r++)
            {
                m[r, 0] = right[r]; m[r, 1] = up[r]; m[r, 2] = -fwd[r]; m[r, 3] = pos[r];
            }
            m[3, 3] = 1;
            if (blenderCoordinates)
            {
                // Left-multiply by [[1,0,0,0],[0,0,-1,0],[0,1,0,0],[0,0,0,1]]: (x, y, z) → (x, −z, y).
                for (int c = 0; c < 4; c++)
                {
                    double y = m[1, c], z = m[2, c];
                    m[1, c] = -z;
                    m[2, c] = y;
                }
            }
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++)
                    rows[k * 16 + r * 4 + c] = (float)m[r, c];
        }
        return tensor(rows).reshape(numFrames, 16);
    }

    static double[] Cross(double[] a, double[] b) =>
        new[] { a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0] };

    static double[] Normalize(double[] v)
    {
        double n = Math.Sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        return new[] { v[0] / n, v[1] / n, v[2] / n };
    }
}
