using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>CrossAttnUpBlock2D</c>: (resnet over [hidden; skip] → Transformer2DModel) pairs, then an optional upsampler.</summary>
internal sealed class CrossAttnUpBlock2D : UNetUpBlock
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public CrossAttnUpBlock2D(int numLayers, long inChannels, long prevOutputChannels, long outChannels, bool addUpsample,
        ResnetSettings r, CrossAttentionSettings a)
        : base(nameof(CrossAttnUpBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            long skip = i == numLayers - 1 ? inChannels : outChannels;
            long resIn = i == 0 ? prevOutputChannels : outChannels;
            resnets.Add(r.Resnet(resIn + skip, outChannels));
            attentions.Add(a.Transformer(outChannels, r));
        }
        if (addUpsample)
            upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels, r.Factory));
        RegisterComponents();
    }

    public override int SkipCount => resnets.Count;

    public override Tensor Forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor? encoderHiddenStates, long[]? upsampleSize, int numFrames)
    {
        var h = hidden;
        for (int i = 0; i < resnets.Count; i++)
        {
            var skip = skips[skips.Count - 1 - i];
            h = resnets[i].call(cat(new[] { h, skip }, 1), temb);
            h = attentions[i].Forward(h, encoderHiddenStates, numFrames);
        }
        if (upsamplers is not null)
            foreach (var u in upsamplers) h = u.call(h, upsampleSize);
        return h;
    }
}
