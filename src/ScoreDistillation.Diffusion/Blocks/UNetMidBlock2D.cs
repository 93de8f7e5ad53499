using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>UNetMidBlock2D</c> (the VAE's mid block): resnet, then (spatial self-attention → resnet) per layer.</summary>
internal sealed class UNetMidBlock2D : nn.Module
{
    private readonly ModuleList<Attention>? attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2D(long channels, int numLayers, bool addAttention, long attentionHeadDim, double outputScaleFactor, ResnetSettings r)
        : base(nameof(UNetMidBlock2D))
    {
        resnets = nn.ModuleList(r.Resnet(channels, channels, outputScaleFactor));
        if (addAttention) attentions = nn.ModuleList<Attention>();
        for (int i = 0; i < numLayers; i++)
        {
            attentions?.Add(new Attention(channels, null, (int)(channels / attentionHeadDim), (int)attentionHeadDim, bias: true,
                upcast: true, r.Factory, normGroups: r.Groups, normEps: r.Eps, residualConnection: true, rescaleOutputFactor: outputScaleFactor));
            resnets.Add(r.Resnet(channels, channels, outputScaleFactor));
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor hidden, Tensor? temb)
    {
        var h = resnets[0].call(hidden, temb);
        for (int i = 1; i < resnets.Count; i++)
        {
            if (attentions is not null) h = attentions[i - 1].call(h, null);
            h = resnets[i].call(h, temb);
        }
        return h;
    }
}
