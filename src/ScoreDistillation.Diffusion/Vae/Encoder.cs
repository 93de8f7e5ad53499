using ScoreDistillation.Diffusion.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Vae;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers VAE <c>Encoder</c>: conv_in, DownEncoderBlock2D stack, UNetMidBlock2D, GroupNorm, act, conv_out to 2×latent channels (mean and log-variance).</summary>
internal sealed class Encoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<DownEncoderBlock2D> down_blocks;
    private readonly UNetMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;
    private readonly Func<Tensor, Tensor> _act;

    internal Action<string, Tensor>? Trace { get; set; }

    public Encoder(AutoencoderKLConfig c, LayerFactory f) : base(nameof(Encoder))
    {
        var boc = c.BlockOutChannels;
        var r = new ResnetSettings(null, 1e-6, c.ActFn, c.NormNumGroups, "default", 0.0, f);
        _act = Activations.Get(c.ActFn);
        conv_in = f.Conv2d(c.InChannels, boc[0], 3, padding: 1);
        down_blocks = nn.ModuleList<DownEncoderBlock2D>();
        int outCh = boc[0];
        for (int i = 0; i < c.DownBlockTypes.Count; i++)
        {
            if (c.DownBlockTypes[i] != "DownEncoderBlock2D")
                throw new NotSupportedException($"AutoencoderKL: unsupported down block type '{c.DownBlockTypes[i]}' (supported: DownEncoderBlock2D).");
            int inCh = outCh;
            outCh = boc[i];
            down_blocks.Add(new DownEncoderBlock2D(c.LayersPerBlock, inCh, outCh, i != c.DownBlockTypes.Count - 1, 0, r));
        }
        mid_block = new UNetMidBlock2D(boc[^1], 1, c.MidBlockAddAttention, boc[^1], 1.0, r);
        conv_norm_out = f.GroupNorm(c.NormNumGroups, boc[^1], 1e-6);
        conv_out = f.Conv2d(boc[^1], 2L * c.LatentChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.call(sample);
        for (int i = 0; i < down_blocks.Count; i++)
        {
            h = down_blocks[i].call(h);
            Trace?.Invoke($"encoder.down_blocks.{i}", h);
        }
        h = mid_block.Forward(h, null);
        Trace?.Invoke("encoder.mid_block", h);
        h = conv_out.call(_act(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }
}
