using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>Downsample2D</c> with a stride-2 3×3 conv; padding 0 means LDM's asymmetric (0,1,0,1) zero pad first.</summary>
internal sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly long _padding;

    public Downsample2D(long channels, long outChannels, long padding, LayerFactory f) : base(nameof(Downsample2D))
    {
        _padding = padding;
        conv = f.Conv2d(channels, outChannels, 3, stride: 2, padding: padding);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        if (_padding != 0)
            return conv.call(input);
        using var scope = NewDisposeScope();
        var padded = nn.functional.pad(input, new long[] { 0, 1, 0, 1 }, PaddingModes.Constant, 0);
        return conv.call(padded).MoveToOuterDisposeScope();
    }
}
