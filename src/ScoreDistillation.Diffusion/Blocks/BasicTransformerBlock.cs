using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// diffusers <c>BasicTransformerBlock</c> (layer_norm variant): self-attention, cross-attention and a GEGLU feed-forward,
/// each pre-normalised with a residual add. With <c>numFrames</c> &gt; 1 the self-attention runs jointly over the tokens of
/// all views of a sample (MVDream's multi-view attention; views of one sample are contiguous in the batch).
/// </summary>
internal sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor?, Tensor>
{
    internal readonly LayerNorm norm1;
    internal readonly Attention attn1;
    internal readonly LayerNorm norm2;
    internal readonly Attention attn2;
    internal readonly LayerNorm norm3;
    internal readonly FeedForward ff;

    private readonly bool _onlyCrossAttention;

    /// <summary>Called with (name, tensor) for the raw attn1 / attn2 / ff outputs; for debugging and parity tests.</summary>
    internal Action<string, Tensor>? Trace { get; set; }

    public BasicTransformerBlock(long dim, int heads, int headDim, long crossAttentionDim, bool onlyCrossAttention,
        bool doubleSelfAttention, bool upcastAttention, double dropoutP, double normEps, LayerFactory f, string activationFn = "geglu")
        : base(nameof(BasicTransformerBlock))
    {
        _onlyCrossAttention = onlyCrossAttention;
        norm1 = f.LayerNorm(dim, normEps);
        attn1 = new Attention(dim, onlyCrossAttention ? crossAttentionDim : null, heads, headDim, bias: false, upcastAttention, f, dropoutP: dropoutP);
        norm2 = f.LayerNorm(dim, normEps);
        attn2 = new Attention(dim, doubleSelfAttention ? null : crossAttentionDim, heads, headDim, bias: false, upcastAttention, f, dropoutP: dropoutP);
        norm3 = f.LayerNorm(dim, normEps);
        ff = new FeedForward(dim, null, 4, activationFn, dropoutP, f);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? encoderHiddenStates) => Forward(hidden, encoderHiddenStates, 1);

    /// <summary>hidden [B·F, L, C], context [B·F, S, D] → [B·F, L, C].</summary>
    public Tensor Forward(Tensor hidden, Tensor? encoderHiddenStates, int numFrames)
    {
        using var scope = NewDisposeScope();
        var h = hidden;

        var n = norm1.call(h);
        Tensor a;
        if (numFrames > 1 && !_onlyCrossAttention)
        {
            long bf = n.shape[0], l = n.shape[1], c = n.shape[2];
            if (bf % numFrames != 0)
                throw new ArgumentException($"Multi-view attention: batch {bf} is not a multiple of num_frames {numFrames}.");
            a = attn1.call(n.reshape(bf / numFrames, numFrames * l, c), null).reshape(bf, l, c);
        }
        else
        {
            a = attn1.call(n, _onlyCrossAttention ? encoderHiddenStates : null);
        }
        Trace?.Invoke("attn1", a);
        h = a + h;

        n = norm2.call(h);
        a = attn2.call(n, encoderHiddenStates);
        Trace?.Invoke("attn2", a);
        h = a + h;

        n = norm3.call(h);
        a = ff.call(n);
        Trace?.Invoke("ff", a);
        h = a + h;
        return h.MoveToOuterDisposeScope();
    }
}
