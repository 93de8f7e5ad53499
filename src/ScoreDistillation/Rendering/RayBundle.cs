using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// World-space rays through the pixel centres of N cameras: origins and unit directions [N, H, W, 3] (row 0 is the
/// top of the image). Owns its tensors.
/// </summary>
public sealed class RayBundle : IDisposable
{
    /// <summary>Creates a bundle; takes ownership of the tensors (both [N, H, W, 3]).</summary>
    public RayBundle(Tensor origins, Tensor directions)
    {
        ArgumentNullException.ThrowIfNull(origins);
        ArgumentNullException.ThrowIfNull(directions);
        if (origins.dim() != 4 || origins.shape[3] != 3)
            throw new ArgumentException($"Ray origins must be [N, H, W, 3], got [{string.Join(", ", origins.shape)}].", nameof(origins));
        if (!origins.shape.SequenceEqual(directions.shape))
            throw new ArgumentException($"Ray directions [{string.Join(", ", directions.shape)}] must match origins [{string.Join(", ", origins.shape)}].", nameof(directions));
        Origins = origins;
        Directions = directions;
    }

    /// <summary>Ray origins [N, H, W, 3].</summary>
    public Tensor Origins { get; }

    /// <summary>Unit ray directions [N, H, W, 3].</summary>
    public Tensor Directions { get; }

    /// <summary>Number of cameras N.</summary>
    public int Count => (int)Origins.shape[0];

    /// <summary>Image height H.</summary>
    public int Height => (int)Origins.shape[1];

    /// <summary>Image width W.</summary>
    public int Width => (int)Origins.shape[2];

    /// <summary>Origins as [N, H·W, 3] (a view).</summary>
    public Tensor FlatOrigins() => Origins.view(Count, (long)Height * Width, 3);

    /// <summary>Directions as [N, H·W, 3] (a view).</summary>
    public Tensor FlatDirections() => Directions.view(Count, (long)Height * Width, 3);

    /// <summary>
    /// Camera-space directions through the pixel centres, (x, y, z) = ((i + ½ − W/2)/f, −(j + ½ − H/2)/f, −1), not
    /// normalised, for focal lengths in pixels [N] → [N, H, W, 3].
    /// </summary>
    public static Tensor CameraDirections(Tensor focal, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(focal);
        if (height <= 0 || width <= 0) throw new ArgumentException($"Image size must be positive, got {height}×{width}.");
        using var scope = NewDisposeScope();
        var i = (arange(width, dtype: focal.dtype, device: focal.device) + 0.5 - width / 2.0).view(1, 1, width).expand(focal.shape[0], height, width);
        var j = (arange(height, dtype: focal.dtype, device: focal.device) + 0.5 - height / 2.0).view(1, height, 1).expand(focal.shape[0], height, width);
        var f = focal.view(-1, 1, 1);
        return stack(new[] { i / f, -(j / f), -ones_like(i) }, -1).MoveToOuterDisposeScope();
    }

    /// <summary>Rays of every pixel centre of the cameras at resolution <paramref name="height"/>×<paramref name="width"/>.</summary>
    public static RayBundle FromCameras(CameraBatch cameras, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(cameras);
        using var scope = NewDisposeScope();
        var c2w = cameras.CameraToWorld;
        var dirsCam = CameraDirections(Cameras.FocalLength(cameras.FovY.to(c2w.dtype, c2w.device), height), height, width);
        var rot = c2w.narrow(1, 0, 3).narrow(2, 0, 3);                          // [N, 3, 3]
        var dirs = (dirsCam.unsqueeze(-2) * rot.view(-1, 1, 1, 3, 3)).sum(-1);   // R · d per pixel
        dirs = nn.functional.normalize(dirs, dim: -1);
        var origins = c2w.narrow(1, 0, 3).select(2, 3).view(-1, 1, 1, 3).expand_as(dirs).contiguous();
        return new RayBundle(origins.MoveToOuterDisposeScope(), dirs.MoveToOuterDisposeScope());
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Origins.Dispose();
        Directions.Dispose();
    }
}
