using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Clip;

#pragma warning disable IDE1006 // snake_case fields are the transformers state-dict names

/// <summary>Outputs of a CLIP vision tower call. Disposing it disposes every tensor it holds.</summary>
public sealed class ClipVisionOutput : IDisposable
{
    internal ClipVisionOutput(Tensor embeds, Tensor pooled, Tensor last, Tensor? embeddings, IReadOnlyList<Tensor> hidden)
    {
        ImageEmbeds = embeds;
        PoolerOutput = pooled;
        LastHiddenState = last;
        Embeddings = embeddings;
        HiddenStates = hidden;
    }

    /// <summary>[B, P] projected image embedding (<c>visual_projection(pooler_output)</c>, not normalised).</summary>
    public Tensor ImageEmbeds { get; }

    /// <summary>[B, H] <c>post_layernorm</c> of the class token.</summary>
    public Tensor PoolerOutput { get; }

    /// <summary>[B, 1 + patches, H] output of the last layer (no final norm).</summary>
    public Tensor LastHiddenState { get; }

    /// <summary>When hidden states were requested: class token + patches + positions, before <c>pre_layrnorm</c>.</summary>
    public Tensor? Embeddings { get; }

    /// <summary>When requested: the encoder input (after <c>pre_layrnorm</c>, index 0) then every layer's output; otherwise empty.</summary>
    public IReadOnlyList<Tensor> HiddenStates { get; }

    /// <summary>Moves every tensor to the enclosing dispose scope.</summary>
    public ClipVisionOutput MoveToOuterDisposeScope()
    {
        ClipOutputTensors.MoveToOuterDisposeScope([ImageEmbeds, PoolerOutput, LastHiddenState, Embeddings], HiddenStates);
        return this;
    }

    /// <inheritdoc />
    public void Dispose() => ClipOutputTensors.Dispose([ImageEmbeds, PoolerOutput, LastHiddenState, Embeddings], HiddenStates);
}

/// <summary>
/// transformers' <c>CLIPVisionModelWithProjection</c>: a ViT with a class token, learned positions, <c>pre_layrnorm</c>,
/// pre-LN encoder layers, <c>post_layernorm</c> on the class token and a bias-free <c>visual_projection</c>. General to the
/// configurations a <c>config.json</c> expresses (ViT-B/32, ViT-B/16, ViT-L/14, ...); names equal the transformers keys.
/// </summary>
public sealed class CLIPVisionModelWithProjection : nn.Module<Tensor, Tensor>
{
    readonly ClipVisionTransformer vision_model;
    readonly Linear visual_projection;

    /// <summary>Builds the model with freshly initialised weights (<c>meta</c> device builds shapes only).</summary>
    public CLIPVisionModelWithProjection(ClipVisionConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(CLIPVisionModelWithProjection))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("ClipVisionConfig");
        Config = config;
        vision_model = new ClipVisionTransformer(config, device, dtype);
        visual_projection = nn.Linear(config.HiddenSize, config.ProjectionDim, false, device, dtype);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public ClipVisionConfig Config { get; }

    /// <summary>
    /// Loads a Hugging Face folder: a <c>CLIPVisionModelWithProjection</c> folder or a full <c>CLIPModel</c> folder such as
    /// <c>openai/clip-vit-large-patch14</c> (the text tower, <c>logit_scale</c> and <c>position_ids</c> buffers are ignored).
    /// </summary>
    public static CLIPVisionModelWithProjection FromPretrained(string directory, ScalarType? dtype = null, Device? device = null)
    {
        var config = ClipVisionConfig.FromFile(Path.Combine(directory, "config.json"));
        return ClipCheckpoint.LoadPretrained(directory, () => new CLIPVisionModelWithProjection(config, device, dtype ?? ScalarType.Float32),
            k => ClipCheckpoint.IgnoredByTower(k, "text_model.", "text_projection."));
    }

    /// <summary>Projected image embeddings [B, P] (not normalised) for CLIP-normalised pixels [B, C, S, S].</summary>
    public override Tensor forward(Tensor pixelValues)
    {
        using var scope = NewDisposeScope();
        var (_, pooled) = vision_model.Run(pixelValues, null, null);
        return visual_projection.forward(pooled).MoveToOuterDisposeScope();
    }

    /// <summary>All outputs for CLIP-normalised pixels [B, C, S, S].</summary>
    public ClipVisionOutput Encode(Tensor pixelValues, bool outputHiddenStates = false)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        using var scope = NewDisposeScope();
        var states = outputHiddenStates ? new List<Tensor>() : null;
        var raw = outputHiddenStates ? new Tensor[1] : null;
        var (last, pooled) = vision_model.Run(pixelValues, states, raw);
        var embeds = visual_projection.forward(pooled);
        return new ClipVisionOutput(embeds, pooled, last, raw?[0], (IReadOnlyList<Tensor>?)states ?? []).MoveToOuterDisposeScope();
    }
}
