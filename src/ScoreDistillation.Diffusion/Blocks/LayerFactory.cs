using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

/// <summary>
/// Builds the primitive layers of the diffusion blocks on one device and dtype (the <c>meta</c> device builds
/// shapes without memory). Norm layers are initialised to weight 1, bias 0 as in PyTorch.
/// </summary>
internal readonly record struct LayerFactory(Device? Device = null, ScalarType? DType = null)
{
    public Linear Linear(long inFeatures, long outFeatures, bool bias = true) =>
        nn.Linear(inFeatures, outFeatures, hasBias: bias, device: Device, dtype: DType);

    public Conv2d Conv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0, bool bias = true) =>
        nn.Conv2d(inChannels, outChannels, kernelSize, stride: stride, padding: padding, bias: bias, device: Device, dtype: DType);

    public GroupNorm GroupNorm(long groups, long channels, double eps, bool affine = true)
    {
        if (channels % groups != 0)
            throw new ArgumentException($"GroupNorm: {channels} channels are not divisible into {groups} groups.");
        var norm = nn.GroupNorm(groups, channels, eps, affine, device: Device, dtype: DType);
        // TorchSharp 0.107 leaves GroupNorm's affine parameters uninitialised.
        ResetAffine(norm.weight, norm.bias);
        return norm;
    }

    public LayerNorm LayerNorm(long dim, double eps, bool affine = true)
    {
        var norm = nn.LayerNorm(dim, eps, elementwise_affine: affine, device: Device, dtype: DType);
        ResetAffine(norm.weight, norm.bias);
        return norm;
    }

    static void ResetAffine(Tensor? weight, Tensor? bias)
    {
        using var _ = no_grad();
        weight?.fill_(1.0);
        bias?.zero_();
    }
}
