using ScoreDistillation.Diffusion.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Vae;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers VAE <c>Decoder</c>: conv_in, UNetMidBlock2D, UpDecoderBlock2D stack, GroupNorm, act, conv_out.</summary>
internal sealed class Decoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly UNetMidBlock2D mid_block;
    private readonly ModuleList<UpDecoderBlock2D> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;
    private readonly Func<Tensor, Tensor> _act;

    internal Action<string, Tensor>? Trace { get; set; }

    public Decoder(AutoencoderKLConfig c, LayerFactory f) : base(nameof(Decoder))
    {
        var boc = c.BlockOutChannels;
        var r = new ResnetSettings(null, 1e-6, c.ActFn, c.NormNumGroups, "default", 0.0, f);
        _act = Activations.Get(c.ActFn);
        conv_in = f.Conv2d(c.LatentChannels, boc[^1], 3, padding: 1);
        mid_block = new UNetMidBlock2D(boc[^1], 1, c.MidBlockAddAttention, boc[^1], 1.0, r);
        up_blocks = nn.ModuleList<UpDecoderBlock2D>();
        var rev = boc.Reverse().ToArray();
        int outCh = rev[0];
        for (int i = 0; i < c.UpBlockTypes.Count; i++)
        {
            if (c.UpBlockTypes[i] != "UpDecoderBlock2D")
                throw new NotSupportedException($"AutoencoderKL: unsupported up block type '{c.UpBlockTypes[i]}' (supported: UpDecoderBlock2D).");
            int prev = outCh;
            outCh = rev[i];
            up_blocks.Add(new UpDecoderBlock2D(c.LayersPerBlock + 1, prev, outCh, i != c.UpBlockTypes.Count - 1, r));
        }
        conv_norm_out = f.GroupNorm(c.NormNumGroups, boc[0], 1e-6);
        conv_out = f.Conv2d(boc[0], c.OutChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.call(z);
        h = mid_block.Forward(h, null);
        Trace?.Invoke("decoder.mid_block", h);
        foreach (var up in up_blocks) h = up.call(h);
        h = conv_out.call(_act(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }
}
