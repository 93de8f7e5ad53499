using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>DownEncoderBlock2D</c> (VAE encoder): resnets without time input, then an optional downsampler.</summary>
internal sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int numLayers, long inChannels, long outChannels, bool addDownsample, long downsamplePadding, ResnetSettings r)
        : base(nameof(DownEncoderBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
            resnets.Add(r.Resnet(i == 0 ? inChannels : outChannels, outChannels));
        if (addDownsample)
            downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding, r.Factory));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var h = hidden;
        foreach (var resnet in resnets) h = resnet.call(h, null);
        if (downsamplers is not null)
            foreach (var d in downsamplers) h = d.call(h);
        return h.MoveToOuterDisposeScope();
    }
}
