using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Vae;

/// <summary>
/// The VAE posterior N(mean, exp(logvar)) per latent element (diffusers <c>DiagonalGaussianDistribution</c>; logvar
/// clamped to [−30, 20]). Owns its tensors; gradients flow from them back to the encoded image.
/// </summary>
public sealed class DiagonalGaussianDistribution : IDisposable
{
    /// <summary>Builds the posterior from encoder moments [B, 2C, h, w] (mean = first C channels, log-variance = the rest).</summary>
    public DiagonalGaussianDistribution(Tensor moments)
    {
        ArgumentNullException.ThrowIfNull(moments);
        if (moments.dim() < 2 || moments.shape[1] % 2 != 0)
            throw new ArgumentException($"Posterior moments must have an even channel count, got shape [{string.Join(", ", moments.shape)}].", nameof(moments));
        using var scope = NewDisposeScope();
        var parts = moments.chunk(2, 1);
        Mean = parts[0].MoveToOuterDisposeScope();
        LogVar = parts[1].clamp(-30.0, 20.0).MoveToOuterDisposeScope();
        Std = (LogVar * 0.5).exp().MoveToOuterDisposeScope();
    }

    /// <summary>Posterior mean [B, C, h, w].</summary>
    public Tensor Mean { get; }

    /// <summary>Clamped log-variance [B, C, h, w].</summary>
    public Tensor LogVar { get; }

    /// <summary>Standard deviation exp(logvar / 2).</summary>
    public Tensor Std { get; }

    /// <summary>mean + std · ε with ε ~ N(0, I) drawn from <paramref name="generator"/> (on the mean's device; null uses the global generator).</summary>
    public Tensor Sample(Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var eps = randn(Mean.shape, dtype: Mean.dtype, device: Mean.device, generator: generator);
        return (Mean + Std * eps).MoveToOuterDisposeScope();
    }

    /// <summary>The mode (= the mean); a new handle the caller may dispose.</summary>
    public Tensor Mode() => Mean.alias();

    /// <inheritdoc />
    public void Dispose()
    {
        Mean.Dispose();
        LogVar.Dispose();
        Std.Dispose();
    }
}
