using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>DownBlock2D</c>: resnets then an optional stride-2 downsampler.</summary>
internal sealed class DownBlock2D : UNetDownBlock
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownBlock2D(int numLayers, long inChannels, long outChannels, bool addDownsample, long downsamplePadding, ResnetSettings r)
        : base(nameof(DownBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
            resnets.Add(r.Resnet(i == 0 ? inChannels : outChannels, outChannels));
        if (addDownsample)
            downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding, r.Factory));
        RegisterComponents();
    }

    public override Tensor Forward(Tensor hidden, Tensor temb, Tensor? encoderHiddenStates, int numFrames, List<Tensor> skips)
    {
        var h = hidden;
        foreach (var resnet in resnets)
        {
            h = resnet.call(h, temb);
            skips.Add(h);
        }
        if (downsamplers is not null)
        {
            foreach (var d in downsamplers) h = d.call(h);
            skips.Add(h);
        }
        return h;
    }
}
