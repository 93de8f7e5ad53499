using ScoreDistillation.Generators.Conv3D;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators.Triplane;

// Triplane-Transformer of ScaleDreamer (custom/amortized/extern/triplane_transformer_modules.py, adapted from OpenLRM),
// local-text path. Field names are the upstream state-dict keys (diffusers Attention: to_q/to_k/to_v/to_out.0).
#pragma warning disable IDE1006

/// <summary>LayerNorm over the last dimension with weight 1 and bias 0 at start.</summary>
internal sealed class LayerNormLast : nn.Module<Tensor, Tensor>
{
    private Parameter weight;
    private Parameter bias;
    private readonly double eps;

    public LayerNormLast(int dim, double eps, Device device) : base(nameof(LayerNormLast))
    {
        weight = DeepInit.Param(ones([dim], ScalarType.Float32, device));
        bias = DeepInit.Param(zeros([dim], ScalarType.Float32, device));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.layer_norm(x, [weight.shape[0]], weight, bias, eps);
}

/// <summary>Output projection container (diffusers <c>to_out</c> = [Linear, Dropout]; only index 0 has weights).</summary>
internal sealed class AttentionOut : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "0")]
    private SeededLinear proj;

    public AttentionOut(int inner, int queryDim, Device device, Generator? generator) : base(nameof(AttentionOut))
    {
        proj = new SeededLinear(inner, queryDim, true, device, generator);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>diffusers <c>Attention(heads, dim_head, bias=False)</c>: q/k/v without bias, scaled dot product, output projection with bias.</summary>
internal sealed class MultiHeadAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    private SeededLinear to_q;
    private SeededLinear to_k;
    private SeededLinear to_v;
    private AttentionOut to_out;
    private readonly int heads;

    public MultiHeadAttention(int queryDim, int contextDim, int heads, int headDim, Device device, Generator? generator) : base(nameof(MultiHeadAttention))
    {
        int inner = heads * headDim;
        to_q = new SeededLinear(queryDim, inner, false, device, generator);
        to_k = new SeededLinear(contextDim, inner, false, device, generator);
        to_v = new SeededLinear(contextDim, inner, false, device, generator);
        to_out = new AttentionOut(inner, queryDim, device, generator);
        this.heads = heads;
        RegisterComponents();
    }

    /// <param name="x">Queries [B, L, D].</param>
    /// <param name="context">Keys/values [B, S, Dc], or null for self-attention.</param>
    public override Tensor forward(Tensor x, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var ctx = context ?? x;
        long b = x.shape[0], l = x.shape[1], s = ctx.shape[1];
        var q = to_q.call(x);
        long inner = q.shape[2], dh = inner / heads;
        q = q.view(b, l, heads, dh).transpose(1, 2);
        var k = to_k.call(ctx).view(b, s, heads, dh).transpose(1, 2);
        var v = to_v.call(ctx).view(b, s, heads, dh).transpose(1, 2);
        var o = nn.functional.scaled_dot_product_attention(q, k, v);
        o = o.transpose(1, 2).reshape(b, l, inner);
        return to_out.call(o).MoveToOuterDisposeScope();
    }
}

/// <summary>Transformer MLP (upstream <c>mlp</c> Sequential: 0 Linear, 1 GELU, 2 Dropout(0), 3 Linear, 4 Dropout(0)).</summary>
internal sealed class TransformerMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "0")]
    private SeededLinear fc1;
    [ComponentName(Name = "3")]
    private SeededLinear fc2;

    public TransformerMlp(int dim, int hidden, Device device, Generator? generator) : base(nameof(TransformerMlp))
    {
        fc1 = new SeededLinear(dim, hidden, true, device, generator);
        fc2 = new SeededLinear(hidden, dim, true, device, generator);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.call(nn.functional.gelu(fc1.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-LN block: x += CrossAttn(LN(x), text); x += SelfAttn(LN(x)); x += MLP(LN(x)).</summary>
internal sealed class ConditionModulationBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private LayerNormLast norm1;
    private MultiHeadAttention cross_attn;
    private LayerNormLast norm2;
    private MultiHeadAttention self_attn;
    private LayerNormLast norm3;
    private TransformerMlp mlp;

    public ConditionModulationBlock(TriplaneTransformerOptions o, Device device, Generator? generator) : base(nameof(ConditionModulationBlock))
    {
        int headDim = o.InnerDim / o.Heads;
        norm1 = new LayerNormLast(o.InnerDim, o.LayerNormEps, device);
        cross_attn = new MultiHeadAttention(o.InnerDim, o.TextDim, o.Heads, headDim, device, generator);
        norm2 = new LayerNormLast(o.InnerDim, o.LayerNormEps, device);
        self_attn = new MultiHeadAttention(o.InnerDim, o.InnerDim, o.Heads, headDim, device, generator);
        norm3 = new LayerNormLast(o.InnerDim, o.LayerNormEps, device);
        mlp = new TransformerMlp(o.InnerDim, (int)(o.InnerDim * o.MlpRatio), device, generator);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor text)
    {
        using var scope = NewDisposeScope();
        x = x + cross_attn.call(norm1.call(x), text);
        x = x + self_attn.call(norm2.call(x), null);
        x = x + mlp.call(norm3.call(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Bias-free ConvTranspose2d (k = s = 2), weight [in, out, 2, 2] as in PyTorch.</summary>
internal sealed class ConvTranspose2dNoBias : nn.Module<Tensor, Tensor>
{
    private Parameter weight;

    public ConvTranspose2dNoBias(int inChannels, int outChannels, int kernel, Device device, Generator? generator) : base(nameof(ConvTranspose2dNoBias))
    {
        // PyTorch default (kaiming_uniform a=√5): U(±1/√fan_in) with fan_in = weight.size(1)·k² = out·k².
        double bound = 1.0 / Math.Sqrt(outChannels * kernel * kernel);
        weight = DeepInit.Param(DeepInit.Uniform([inChannels, outChannels, kernel, kernel], bound, device, generator));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        nn.functional.conv_transpose2d(x, weight, null, [weight.shape[2], weight.shape[3]]);
}

/// <summary>Upstream <c>TriplaneTransformer</c>: learned tokens → blocks → LN → shared deconv → planes [B, 3, C, 2R, 2R].</summary>
internal sealed class TriplaneTransformerNetwork : nn.Module<Tensor, Tensor>
{
    private Parameter pos_embed;
    private ModuleList<ConditionModulationBlock> layers;
    private LayerNormLast norm;
    private ConvTranspose2dNoBias deconv;
    private readonly int lowRes;

    public TriplaneTransformerNetwork(TriplaneTransformerOptions o, Device device, Generator? generator) : base(nameof(TriplaneTransformerNetwork))
    {
        lowRes = o.LowResolution;
        using (var r = DeepInit.Randn([1, 3L * o.LowResolution * o.LowResolution, o.InnerDim], device, generator))
            pos_embed = DeepInit.Param(r.mul(1.0 / Math.Sqrt(o.InnerDim)));
        layers = new ModuleList<ConditionModulationBlock>();
        for (int i = 0; i < o.Layers; i++) layers.append(new ConditionModulationBlock(o, device, generator));
        norm = new LayerNormLast(o.InnerDim, o.LayerNormEps, device);
        deconv = new ConvTranspose2dNoBias(o.InnerDim, o.PlaneChannels, 2, device, generator);
        RegisterComponents();
    }

    /// <param name="text">Text tokens [B, S, TextDim].</param>
    public override Tensor forward(Tensor text)
    {
        using var scope = NewDisposeScope();
        long n = text.shape[0], h = lowRes, w = lowRes;
        var x = pos_embed.expand(n, -1, -1);
        foreach (var layer in layers) x = layer.call(x, text);
        x = norm.call(x);
        long d = x.shape[2];
        // Tokens are plane-major (plane, row, column); each plane is deconvolved on its own.
        x = x.view(n, 3, h, w, d).permute(1, 0, 4, 2, 3).reshape(3 * n, d, h, w);
        x = deconv.call(x);
        x = x.view(3, n, x.shape[1], x.shape[2], x.shape[3]).permute(1, 0, 2, 3, 4).contiguous();
        return x.MoveToOuterDisposeScope();
    }
}
#pragma warning restore IDE1006
