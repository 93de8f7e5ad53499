using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>Upsample2D</c>: nearest ×2 (or to an explicit size) followed by a 3×3 conv.</summary>
internal sealed class Upsample2D : nn.Module<Tensor, long[]?, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2D(long channels, long outChannels, LayerFactory f) : base(nameof(Upsample2D))
    {
        conv = f.Conv2d(channels, outChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, long[]? outputSize)
    {
        using var scope = NewDisposeScope();
        var x = input;
        // Nearest upsampling of bfloat16 is not implemented on every backend; diffusers upcasts too.
        bool upcast = x.dtype == ScalarType.BFloat16;
        if (upcast) x = x.to(ScalarType.Float32);
        x = outputSize is null
            ? nn.functional.interpolate(x, scale_factor: new[] { 2.0, 2.0 }, mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(x, size: outputSize, mode: InterpolationMode.Nearest);
        if (upcast) x = x.to(ScalarType.BFloat16);
        return conv.call(x).MoveToOuterDisposeScope();
    }
}
