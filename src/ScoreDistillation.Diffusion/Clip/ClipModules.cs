using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ScoreDistillation.Diffusion.Clip;

#pragma warning disable IDE1006 // snake_case fields are the transformers state-dict names

internal static class ClipActivation
{
    public static void Check(string name, string source)
    {
        if (name is not ("quick_gelu" or "gelu" or "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" or "relu"))
            throw new InvalidDataException($"{source}: unsupported hidden_act '{name}' (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu).");
    }

    public static Tensor Apply(string name, Tensor x)
    {
        switch (name)
        {
            case "quick_gelu":
            {
                using var s = (x * 1.702).sigmoid_();
                return x * s;
            }
            case "gelu": return functional.gelu(x);
            case "relu": return functional.relu(x);
            default:
            {
                // tanh approximation (gelu_new, gelu_pytorch_tanh, gelu_fast)
                using var scope = NewDisposeScope();
                var inner = (x + x.pow(3) * 0.044715) * Math.Sqrt(2.0 / Math.PI);
                return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
            }
        }
    }
}

/// <summary>Multi-head self-attention with separate q/k/v/out projections (transformers <c>CLIPAttention</c>).</summary>
internal sealed class ClipAttention : Module<Tensor, Tensor>
{
    readonly Linear k_proj, v_proj, q_proj, out_proj;
    readonly int _heads;
    readonly bool _causal;

    public ClipAttention(int hidden, int heads, bool causal, Device? device, ScalarType? dtype) : base("CLIPAttention")
    {
        _heads = heads;
        _causal = causal;
        k_proj = Linear(hidden, hidden, true, device, dtype);
        v_proj = Linear(hidden, hidden, true, device, dtype);
        q_proj = Linear(hidden, hidden, true, device, dtype);
        out_proj = Linear(hidden, hidden, true, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        long d = c / _heads;
        Tensor Split(Tensor y) => y.view(b, t, _heads, d).transpose(1, 2);
        var q = Split(q_proj.forward(x));
        var k = Split(k_proj.forward(x));
        var v = Split(v_proj.forward(x));
        // scaled_dot_product_attention scales by head_dim^-0.5, as CLIP does; the text tower is always causal.
        var o = functional.scaled_dot_product_attention(q, k, v, is_casual: _causal);
        o = o.transpose(1, 2).reshape(b, t, c);
        return out_proj.forward(o).MoveToOuterDisposeScope();
    }
}

internal sealed class ClipMlp : Module<Tensor, Tensor>
{
    readonly Linear fc1, fc2;
    readonly string _act;

    public ClipMlp(int hidden, int intermediate, string act, Device? device, ScalarType? dtype) : base("CLIPMLP")
    {
        _act = act;
        fc1 = Linear(hidden, intermediate, true, device, dtype);
        fc2 = Linear(intermediate, hidden, true, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.forward(ClipActivation.Apply(_act, fc1.forward(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)).</summary>
internal sealed class ClipEncoderLayer : Module<Tensor, Tensor>
{
    readonly ClipAttention self_attn;
    readonly LayerNorm layer_norm1;
    readonly ClipMlp mlp;
    readonly LayerNorm layer_norm2;

    public ClipEncoderLayer(int hidden, int intermediate, int heads, string act, double eps, bool causal, Device? device, ScalarType? dtype)
        : base("CLIPEncoderLayer")
    {
        self_attn = new ClipAttention(hidden, heads, causal, device, dtype);
        layer_norm1 = LayerNorm(hidden, eps, true, true, device, dtype);
        mlp = new ClipMlp(hidden, intermediate, act, device, dtype);
        layer_norm2 = LayerNorm(hidden, eps, true, true, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.forward(layer_norm1.forward(x));
        return (h + mlp.forward(layer_norm2.forward(h))).MoveToOuterDisposeScope();
    }
}

internal sealed class ClipEncoder : Module<Tensor, Tensor>
{
    readonly ModuleList<ClipEncoderLayer> layers = new();

    public ClipEncoder(int count, Func<ClipEncoderLayer> make) : base("CLIPEncoder")
    {
        for (int i = 0; i < count; i++) layers.Add(make());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Run(x, null);

    /// <summary>Runs every layer; when <paramref name="states"/> is given it receives the input and every layer output.</summary>
    public Tensor Run(Tensor x, List<Tensor>? states)
    {
        states?.Add(x.alias());
        var h = x.alias();
        foreach (var layer in layers)
        {
            var next = layer.forward(h);
            if (states is not null) states.Add(next);
            else h.Dispose();
            h = states is null ? next : next.alias();
        }
        return h;
    }
}

internal sealed class ClipTextEmbeddings : Module<Tensor, Tensor>
{
    readonly Embedding token_embedding, position_embedding;

    public ClipTextEmbeddings(ClipTextConfig c, Device? device, ScalarType? dtype) : base("CLIPTextEmbeddings")
    {
        token_embedding = Embedding(c.VocabSize, c.HiddenSize, device: device, dtype: dtype);
        position_embedding = Embedding(c.MaxPositionEmbeddings, c.HiddenSize, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        long t = ids.shape[^1];
        var positions = arange(t, ScalarType.Int64, ids.device);
        return (token_embedding.forward(ids) + position_embedding.forward(positions)).MoveToOuterDisposeScope();
    }
}

/// <summary>transformers <c>CLIPTextTransformer</c>: embeddings, causal encoder, final LayerNorm.</summary>
internal sealed class ClipTextTransformer : Module<Tensor, Tensor>
{
    readonly ClipTextEmbeddings embeddings;
    readonly ClipEncoder encoder;
    readonly LayerNorm final_layer_norm;

    public ClipTextTransformer(ClipTextConfig c, Device? device, ScalarType? dtype) : base("CLIPTextTransformer")
    {
        embeddings = new ClipTextEmbeddings(c, device, dtype);
        encoder = new ClipEncoder(c.NumHiddenLayers,
            () => new ClipEncoderLayer(c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.HiddenAct, c.LayerNormEps, true, device, dtype));
        final_layer_norm = LayerNorm(c.HiddenSize, c.LayerNormEps, true, true, device, dtype);
        RegisterComponents();
    }

    public LayerNorm FinalLayerNorm => final_layer_norm;

    public override Tensor forward(Tensor ids) => Run(ids, null);

    /// <summary>Last hidden state (after the final norm) and, if asked, the hidden states (embeddings + every layer output, no final norm).</summary>
    public Tensor Run(Tensor ids, List<Tensor>? states)
    {
        using var scope = NewDisposeScope();
        var h = encoder.Run(embeddings.forward(ids), states);
        var last = final_layer_norm.forward(h).MoveToOuterDisposeScope();
        if (states is not null) foreach (var s in states) s.MoveToOuterDisposeScope();
        return last;
    }
}

internal sealed class ClipVisionEmbeddings : Module<Tensor, Tensor>
{
    readonly Parameter class_embedding;
    readonly Conv2d patch_embedding;
    readonly Embedding position_embedding;
    readonly int _imageSize;

    public ClipVisionEmbeddings(ClipVisionConfig c, Device? device, ScalarType? dtype) : base("CLIPVisionEmbeddings")
    {
        _imageSize = c.ImageSize;
        class_embedding = new Parameter(randn(c.HiddenSize, dtype: dtype, device: device));
        patch_embedding = Conv2d(c.NumChannels, c.HiddenSize, c.PatchSize, stride: c.PatchSize, bias: false, device: device, dtype: dtype);
        position_embedding = Embedding(c.NumPositions, c.HiddenSize, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        if (pixels.ndim != 4 || pixels.shape[2] != _imageSize || pixels.shape[3] != _imageSize)
            throw new ArgumentException($"pixel_values must be [B, C, {_imageSize}, {_imageSize}], got [{string.Join(", ", pixels.shape)}].", nameof(pixels));
        using var scope = NewDisposeScope();
        long b = pixels.shape[0];
        var patches = patch_embedding.forward(pixels.to(patch_embedding.weight!.dtype)).flatten(2).transpose(1, 2);
        var cls = class_embedding.view(1, 1, -1).expand(b, 1, -1);
        return (cat(new[] { cls, patches }, 1) + position_embedding.weight!.unsqueeze(0)).MoveToOuterDisposeScope();
    }
}

/// <summary>transformers <c>CLIPVisionTransformer</c>: embeddings, <c>pre_layrnorm</c>, encoder, <c>post_layernorm</c> on the class token.</summary>
internal sealed class ClipVisionTransformer : Module<Tensor, Tensor>
{
    readonly ClipVisionEmbeddings embeddings;
    readonly LayerNorm pre_layrnorm;
    readonly ClipEncoder encoder;
    readonly LayerNorm post_layernorm;

    public ClipVisionTransformer(ClipVisionConfig c, Device? device, ScalarType? dtype) : base("CLIPVisionTransformer")
    {
        embeddings = new ClipVisionEmbeddings(c, device, dtype);
        pre_layrnorm = LayerNorm(c.HiddenSize, c.LayerNormEps, true, true, device, dtype);
        encoder = new ClipEncoder(c.NumHiddenLayers,
            () => new ClipEncoderLayer(c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.HiddenAct, c.LayerNormEps, false, device, dtype));
        post_layernorm = LayerNorm(c.HiddenSize, c.LayerNormEps, true, true, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var (_, pooled) = Run(pixels, null, null);
        return pooled.MoveToOuterDisposeScope();
    }

    /// <summary>(last_hidden_state, pooler_output); optionally the raw embeddings and the hidden states.</summary>
    public (Tensor Last, Tensor Pooled) Run(Tensor pixels, List<Tensor>? states, Tensor[]? rawEmbeddings)
    {
        using var scope = NewDisposeScope();
        var emb = embeddings.forward(pixels);
        if (rawEmbeddings is not null) rawEmbeddings[0] = emb.alias().MoveToOuterDisposeScope();
        var last = encoder.Run(pre_layrnorm.forward(emb), states);
        var pooled = post_layernorm.forward(last[.., 0]);
        if (states is not null) foreach (var s in states) s.MoveToOuterDisposeScope();
        return (last.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }
}
