using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>UpDecoderBlock2D</c> (VAE decoder): resnets without time input, then an optional upsampler.</summary>
internal sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int numLayers, long inChannels, long outChannels, bool addUpsample, ResnetSettings r)
        : base(nameof(UpDecoderBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
            resnets.Add(r.Resnet(i == 0 ? inChannels : outChannels, outChannels));
        if (addUpsample)
            upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels, r.Factory));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var h = hidden;
        foreach (var resnet in resnets) h = resnet.call(h, null);
        if (upsamplers is not null)
            foreach (var u in upsamplers) h = u.call(h, null);
        return h.MoveToOuterDisposeScope();
    }
}
