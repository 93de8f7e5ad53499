using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>UNetMidBlock2DCrossAttn</c>: resnet, then (Transformer2DModel → resnet) per layer.</summary>
internal sealed class UNetMidBlock2DCrossAttn : nn.Module
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2DCrossAttn(long channels, int numLayers, double outputScaleFactor, ResnetSettings r, CrossAttentionSettings a)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        resnets = nn.ModuleList(r.Resnet(channels, channels, outputScaleFactor));
        attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            attentions.Add(a.Transformer(channels, r));
            resnets.Add(r.Resnet(channels, channels, outputScaleFactor));
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor hidden, Tensor temb, Tensor? encoderHiddenStates, int numFrames)
    {
        var h = resnets[0].call(hidden, temb);
        for (int i = 0; i < attentions.Count; i++)
        {
            h = attentions[i].Forward(h, encoderHiddenStates, numFrames);
            h = resnets[i + 1].call(h, temb);
        }
        return h;
    }
}
