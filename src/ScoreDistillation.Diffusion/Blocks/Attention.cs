using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// Replaces the computation of an <see cref="Attention"/> layer (diffusers' attention-processor idea): LoRA adapters or
/// multi-view variants plug in here while the weights stay in the layer.
/// </summary>
internal interface IAttentionProcessor
{
    /// <summary>Computes the layer output for token sequences <paramref name="hidden"/> [B, L, C] (context [B, S, D] or null for self-attention).</summary>
    Tensor Process(Attention attention, Tensor hidden, Tensor? context);
}

/// <summary>
/// diffusers <c>Attention</c> (multi-head, to_q/to_k/to_v/to_out.0) computed with <c>scaled_dot_product_attention</c>.
/// Also covers the VAE mid-block form: GroupNorm on a [B, C, H, W] input, residual connection and output rescale.
/// </summary>
internal sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    internal readonly GroupNorm? group_norm;
    internal readonly Linear to_q;
    internal readonly Linear to_k;
    internal readonly Linear to_v;
    internal readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;

    /// <summary>Number of heads.</summary>
    public int Heads { get; }

    /// <summary>Channels per head.</summary>
    public int HeadDim { get; }

    /// <summary>Computes attention in float32 when the module runs in half precision (upcast_attention / upcast_softmax).</summary>
    public bool Upcast { get; }

    /// <summary>Replacement computation; null runs the standard attention.</summary>
    public IAttentionProcessor? Processor { get; set; }

    private readonly bool _residual;
    private readonly double _rescale;

    /// <param name="queryDim">Channels of the query tokens (and of the output).</param>
    /// <param name="crossAttentionDim">Channels of the context tokens, or null for self-attention.</param>
    /// <param name="heads">Number of heads.</param>
    /// <param name="dimHead">Channels per head.</param>
    /// <param name="bias">Bias on to_q/to_k/to_v.</param>
    /// <param name="upcast">Compute in float32 for half-precision inputs.</param>
    /// <param name="f">Layer factory.</param>
    /// <param name="normGroups">GroupNorm groups on the input (VAE form), or null.</param>
    /// <param name="normEps">GroupNorm epsilon.</param>
    /// <param name="residualConnection">Add the input to the output.</param>
    /// <param name="rescaleOutputFactor">Divisor of the output.</param>
    /// <param name="dropoutP">Output dropout (inactive in eval).</param>
    public Attention(long queryDim, long? crossAttentionDim, int heads, int dimHead, bool bias, bool upcast, LayerFactory f,
        long? normGroups = null, double normEps = 1e-5, bool residualConnection = false, double rescaleOutputFactor = 1.0, double dropoutP = 0.0)
        : base(nameof(Attention))
    {
        if (heads <= 0 || dimHead <= 0)
            throw new ArgumentException($"Attention: heads ({heads}) and head dim ({dimHead}) must be positive.");
        Heads = heads;
        HeadDim = dimHead;
        Upcast = upcast;
        _residual = residualConnection;
        _rescale = rescaleOutputFactor;
        long inner = (long)heads * dimHead;
        long kvDim = crossAttentionDim ?? queryDim;
        if (normGroups is long g)
            group_norm = f.GroupNorm(g, queryDim, normEps);
        to_q = f.Linear(queryDim, inner, bias);
        to_k = f.Linear(kvDim, inner, bias);
        to_v = f.Linear(kvDim, inner, bias);
        to_out = nn.ModuleList<nn.Module<Tensor, Tensor>>(f.Linear(inner, queryDim, true), nn.Dropout(dropoutP));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var x = hidden;
        bool spatial = x.dim() == 4;
        long b = 0, c = 0, h = 0, w = 0;
        if (spatial)
        {
            (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            x = x.view(b, c, h * w).transpose(1, 2);
        }
        if (group_norm is not null)
            x = group_norm.call(x.transpose(1, 2)).transpose(1, 2);

        var output = Processor is null ? Standard(x, context) : Processor.Process(this, x, context);

        if (spatial)
            output = output.transpose(-1, -2).reshape(b, c, h, w);
        if (_residual)
            output = output + hidden;
        if (_rescale != 1.0)
            output = output / _rescale;
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>q/k/v projections, attention and the output projection (to_out.0 and its dropout).</summary>
    internal Tensor Standard(Tensor x, Tensor? context)
    {
        var ctx = context ?? x;
        var attended = ScaledDotProduct(to_q.call(x), to_k.call(ctx), to_v.call(ctx));
        return OutProjection(attended);
    }

    /// <summary>Applies to_out.0 and the dropout.</summary>
    internal Tensor OutProjection(Tensor attended) => to_out[1].call(to_out[0].call(attended));

    /// <summary>Multi-head softmax(q kᵀ / √d) v on projected tokens q [B, L, H·d], k and v [B, S, H·d] → [B, L, H·d].</summary>
    internal Tensor ScaledDotProduct(Tensor q, Tensor k, Tensor v)
    {
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        bool upcast = Upcast && (dtype == ScalarType.Float16 || dtype == ScalarType.BFloat16);
        long b = q.shape[0];
        Tensor Split(Tensor t)
        {
            var s = t.view(b, -1, Heads, HeadDim).transpose(1, 2);
            return upcast ? s.to(ScalarType.Float32) : s;
        }
        var o = nn.functional.scaled_dot_product_attention(Split(q), Split(k), Split(v));
        o = o.transpose(1, 2).reshape(b, -1, (long)Heads * HeadDim);
        if (upcast) o = o.to(dtype);
        return o.MoveToOuterDisposeScope();
    }
}
