using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>CrossAttnDownBlock2D</c>: (resnet → Transformer2DModel) pairs, then an optional downsampler.</summary>
internal sealed class CrossAttnDownBlock2D : UNetDownBlock
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public CrossAttnDownBlock2D(int numLayers, long inChannels, long outChannels, bool addDownsample, long downsamplePadding,
        ResnetSettings r, CrossAttentionSettings a)
        : base(nameof(CrossAttnDownBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            resnets.Add(r.Resnet(i == 0 ? inChannels : outChannels, outChannels));
            attentions.Add(a.Transformer(outChannels, r));
        }
        if (addDownsample)
            downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding, r.Factory));
        RegisterComponents();
    }

    /// <summary>The first transformer block (parity tests trace its sub-layers).</summary>
    internal BasicTransformerBlock FirstTransformerBlock => attentions[0].transformer_blocks[0];

    public override Tensor Forward(Tensor hidden, Tensor temb, Tensor? encoderHiddenStates, int numFrames, List<Tensor> skips)
    {
        var h = hidden;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = resnets[i].call(h, temb);
            h = attentions[i].Forward(h, encoderHiddenStates, numFrames);
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
