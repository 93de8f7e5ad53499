using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// A batch of pinhole cameras. Convention (threestudio / ScaleDreamer): world +z up; camera position
/// (d·cos e·cos a, d·cos e·sin a, d·sin e); camera-to-world columns [right, up, −lookat, position] (OpenGL camera
/// axes: x right, y up, looking down −z). Angles are in degrees. Owns its tensors.
/// </summary>
public sealed class CameraBatch : IDisposable
{
    /// <summary>Creates a batch; takes ownership of the tensors. All are [B] except <paramref name="cameraToWorld"/> [B, 4, 4].</summary>
    public CameraBatch(Tensor cameraToWorld, Tensor fovY, Tensor elevation, Tensor azimuth, Tensor distance)
    {
        ArgumentNullException.ThrowIfNull(cameraToWorld);
        if (cameraToWorld.dim() != 3 || cameraToWorld.shape[1] != 4 || cameraToWorld.shape[2] != 4)
            throw new ArgumentException($"Camera-to-world must be [B, 4, 4], got [{string.Join(", ", cameraToWorld.shape)}].", nameof(cameraToWorld));
        long b = cameraToWorld.shape[0];
        foreach (var (name, t) in new[] { ("fovY", fovY), ("elevation", elevation), ("azimuth", azimuth), ("distance", distance) })
        {
            ArgumentNullException.ThrowIfNull(t, name);
            if (t.dim() != 1 || t.shape[0] != b) throw new ArgumentException($"{name} must be [{b}], got [{string.Join(", ", t.shape)}].", name);
        }
        CameraToWorld = cameraToWorld;
        FovY = fovY;
        Elevation = elevation;
        Azimuth = azimuth;
        Distance = distance;
    }

    /// <summary>Camera-to-world matrices [B, 4, 4].</summary>
    public Tensor CameraToWorld { get; }

    /// <summary>Vertical field of view in degrees [B].</summary>
    public Tensor FovY { get; }

    /// <summary>Elevation in degrees [B].</summary>
    public Tensor Elevation { get; }

    /// <summary>Azimuth in degrees [B].</summary>
    public Tensor Azimuth { get; }

    /// <summary>Distance from the origin [B].</summary>
    public Tensor Distance { get; }

    /// <summary>Batch size.</summary>
    public int Count => (int)CameraToWorld.shape[0];

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        CameraToWorld.Dispose();
        FovY.Dispose();
        Elevation.Dispose();
        Azimuth.Dispose();
        Distance.Dispose();
    }
}
