using ScoreDistillation.Diffusion.Blocks;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Lora;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>Shared switch of one adapter: whether its processors add their low-rank terms, and with which scale.</summary>
internal sealed class LoraState
{
    public bool Enabled;
    public double Scale = 1.0;
}

/// <summary>
/// diffusers <c>LoRAAttnProcessor</c>: the attention of the layer with W x + scale · up(down(x)) on to_q, to_k, to_v and
/// to_out.0. When its adapter is disabled it runs the layer's standard computation, bit for bit.
/// </summary>
internal sealed class LoraAttentionProcessor : nn.Module, IAttentionProcessor
{
    internal readonly LoraLinearLayer to_q_lora;
    internal readonly LoraLinearLayer to_k_lora;
    internal readonly LoraLinearLayer to_v_lora;
    internal readonly LoraLinearLayer to_out_lora;
    readonly LoraState _state;

    public LoraAttentionProcessor(Attention attention, int rank, LoraState state, Device device) : base(nameof(LoraAttentionProcessor))
    {
        _state = state;
        static (long In, long Out) Dims(TorchSharp.Modules.Linear l) => (l.weight!.shape[1], l.weight!.shape[0]);
        var q = Dims(attention.to_q);
        var k = Dims(attention.to_k);
        var v = Dims(attention.to_v);
        var o = Dims((TorchSharp.Modules.Linear)attention.to_out[0]);
        to_q_lora = new LoraLinearLayer(q.In, q.Out, rank, device);
        to_k_lora = new LoraLinearLayer(k.In, k.Out, rank, device);
        to_v_lora = new LoraLinearLayer(v.In, v.Out, rank, device);
        to_out_lora = new LoraLinearLayer(o.In, o.Out, rank, device);
        RegisterComponents();
    }

    public void Initialise(Generator generator, int rank)
    {
        foreach (var l in new[] { to_q_lora, to_k_lora, to_v_lora, to_out_lora }) l.Initialise(generator, rank);
    }

    public Tensor Process(Attention attention, Tensor hidden, Tensor? context)
    {
        if (!_state.Enabled) return attention.Standard(hidden, context);
        using var scope = NewDisposeScope();
        double s = _state.Scale;
        var ctx = context ?? hidden;
        var q = attention.to_q.call(hidden) + s * to_q_lora.call(hidden);
        var k = attention.to_k.call(ctx) + s * to_k_lora.call(ctx);
        var v = attention.to_v.call(ctx) + s * to_v_lora.call(ctx);
        var attended = attention.ScaledDotProduct(q, k, v);
        var projected = attention.to_out[0].call(attended) + s * to_out_lora.call(attended);
        return attention.to_out[1].call(projected).MoveToOuterDisposeScope();
    }
}
