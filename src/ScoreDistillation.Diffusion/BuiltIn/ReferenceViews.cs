using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// A set of K reference images with the cameras they were rendered from: one sample of the image distribution the
/// built-in prior denoises towards. Holds the images flattened in the prior's space (x = 2·rgb − 1) with their squared
/// norms and unit camera directions, ready for the batched distance computation. Owns its tensors.
/// </summary>
public sealed class ReferenceViews : IDisposable
{
    /// <summary>Creates a set from copies of the inputs (the caller keeps ownership of them). The set's own tensors live until <see cref="Dispose"/>, outside any dispose scope.</summary>
    /// <param name="images">RGB [K, 3, S, S] in [0, 1].</param>
    /// <param name="cameraToWorld">Camera-to-world matrices [K, 4, 4] of the views.</param>
    /// <param name="dtype">Floating dtype the prior computes in.</param>
    public ReferenceViews(Tensor images, Tensor cameraToWorld, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(cameraToWorld);
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[2] != images.shape[3])
            throw new ArgumentException($"Reference images must be [K, 3, S, S], got [{string.Join(", ", images.shape)}].", nameof(images));
        if (images.shape[0] < 1) throw new ArgumentException("A reference set needs at least one image.", nameof(images));
        if (cameraToWorld.dim() != 3 || cameraToWorld.shape[0] != images.shape[0] || cameraToWorld.shape[1] != 4 || cameraToWorld.shape[2] != 4)
            throw new ArgumentException($"Reference cameras must be [{images.shape[0]}, 4, 4], got [{string.Join(", ", cameraToWorld.shape)}].", nameof(cameraToWorld));
        using var scope = NewDisposeScope();
        var img = images.detach().to(dtype).clone();
        var cam = cameraToWorld.detach().to(dtype, images.device).clone();
        var flat = (img * 2 - 1).reshape(img.shape[0], -1).contiguous();
        var norms = flat.square().sum(1);
        var dirs = nn.functional.normalize(cam[.., ..3, 3], p: 2, dim: 1, eps: 1e-12).contiguous();
        Images = img.DetachFromDisposeScope();
        CameraToWorld = cam.DetachFromDisposeScope();
        Flat = flat.DetachFromDisposeScope();
        SquaredNorms = norms.DetachFromDisposeScope();
        Directions = dirs.DetachFromDisposeScope();
    }

    /// <summary>RGB [K, 3, S, S] in [0, 1].</summary>
    public Tensor Images { get; }

    /// <summary>Camera-to-world matrices [K, 4, 4].</summary>
    public Tensor CameraToWorld { get; }

    /// <summary>Number of views K.</summary>
    public int Count => (int)Images.shape[0];

    /// <summary>Image side S.</summary>
    public int ImageSize => (int)Images.shape[2];

    /// <summary>Device of the tensors.</summary>
    public Device Device => Images.device;

    /// <summary>Dtype of the tensors.</summary>
    public ScalarType DType => Images.dtype;

    /// <summary>Images in the prior's space, flattened [K, 3·S·S].</summary>
    internal Tensor Flat { get; }

    /// <summary>‖r_i‖² [K].</summary>
    internal Tensor SquaredNorms { get; }

    /// <summary>Unit directions from the origin to each camera [K, 3].</summary>
    internal Tensor Directions { get; }

    /// <summary>The first <paramref name="count"/> views (new tensors).</summary>
    public ReferenceViews Take(int count)
    {
        if (count < 1 || count > Count) throw new ArgumentOutOfRangeException(nameof(count), count, $"Take between 1 and {Count} views.");
        using var scope = NewDisposeScope();
        return new ReferenceViews(Images[..count], CameraToWorld[..count], DType);
    }

    /// <summary>Concatenates sets (new tensors).</summary>
    public static ReferenceViews Concat(IReadOnlyList<ReferenceViews> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0) throw new ArgumentException("Nothing to concatenate.", nameof(parts));
        using var scope = NewDisposeScope();
        return new ReferenceViews(cat(parts.Select(p => p.Images).ToArray(), 0), cat(parts.Select(p => p.CameraToWorld).ToArray(), 0), parts[0].DType);
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        CameraToWorld.Dispose();
        Flat.Dispose();
        SquaredNorms.Dispose();
        Directions.Dispose();
    }
}
