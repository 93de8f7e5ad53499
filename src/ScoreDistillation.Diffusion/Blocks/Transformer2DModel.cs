using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// diffusers <c>Transformer2DModel</c> for continuous inputs: GroupNorm (eps 1e-6), proj_in (1×1 conv or Linear),
/// a stack of <see cref="BasicTransformerBlock"/>, proj_out, residual add.
/// </summary>
internal sealed class Transformer2DModel : nn.Module<Tensor, Tensor?, Tensor>
{
    internal readonly GroupNorm norm;
    internal readonly nn.Module<Tensor, Tensor> proj_in;
    internal readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    internal readonly nn.Module<Tensor, Tensor> proj_out;

    private readonly bool _linear;

    public Transformer2DModel(int heads, int headDim, long inChannels, int numLayers, long crossAttentionDim, long normGroups,
        bool useLinearProjection, bool onlyCrossAttention, bool upcastAttention, double dropoutP, LayerFactory f)
        : base(nameof(Transformer2DModel))
    {
        _linear = useLinearProjection;
        long inner = (long)heads * headDim;
        norm = f.GroupNorm(normGroups, inChannels, 1e-6);
        proj_in = useLinearProjection ? f.Linear(inChannels, inner) : f.Conv2d(inChannels, inner, 1);
        transformer_blocks = nn.ModuleList<BasicTransformerBlock>();
        for (int i = 0; i < numLayers; i++)
            transformer_blocks.Add(new BasicTransformerBlock(inner, heads, headDim, crossAttentionDim, onlyCrossAttention,
                doubleSelfAttention: false, upcastAttention, dropoutP, 1e-5, f));
        proj_out = useLinearProjection ? f.Linear(inner, inChannels) : f.Conv2d(inner, inChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? encoderHiddenStates) => Forward(hidden, encoderHiddenStates, 1);

    /// <summary>hidden [B, C, H, W] → [B, C, H, W].</summary>
    public Tensor Forward(Tensor hidden, Tensor? encoderHiddenStates, int numFrames)
    {
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], h = hidden.shape[2], w = hidden.shape[3];
        var x = norm.call(hidden);
        if (_linear)
        {
            x = proj_in.call(x.permute(0, 2, 3, 1).reshape(b, h * w, -1));
        }
        else
        {
            x = proj_in.call(x);
            x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1);
        }
        foreach (var block in transformer_blocks)
            x = block.Forward(x, encoderHiddenStates, numFrames);
        if (_linear)
        {
            x = proj_out.call(x);
            x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous();
        }
        else
        {
            x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous();
            x = proj_out.call(x);
        }
        return (x + hidden).MoveToOuterDisposeScope();
    }
}
