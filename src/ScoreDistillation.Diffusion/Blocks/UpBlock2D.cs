using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>UpBlock2D</c>: resnets over [hidden; skip] concatenations, then an optional upsampler.</summary>
internal sealed class UpBlock2D : UNetUpBlock
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpBlock2D(int numLayers, long inChannels, long prevOutputChannels, long outChannels, bool addUpsample, ResnetSettings r)
        : base(nameof(UpBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
        {
            long skip = i == numLayers - 1 ? inChannels : outChannels;
            long resIn = i == 0 ? prevOutputChannels : outChannels;
            resnets.Add(r.Resnet(resIn + skip, outChannels));
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
        }
        if (upsamplers is not null)
            foreach (var u in upsamplers) h = u.call(h, upsampleSize);
        return h;
    }
}
