using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Clip;

#pragma warning disable IDE1006 // snake_case fields are the transformers state-dict names

/// <summary>Outputs of a CLIP text tower call. Disposing it disposes every tensor it holds.</summary>
public sealed class ClipTextOutput : IDisposable
{
    internal ClipTextOutput(Tensor last, Tensor pooled, Tensor? embeds, IReadOnlyList<Tensor> hidden)
    {
        LastHiddenState = last;
        PoolerOutput = pooled;
        TextEmbeds = embeds;
        HiddenStates = hidden;
    }

    /// <summary>[B, T, H] after <c>final_layer_norm</c> (what SD 1.5 feeds its UNet).</summary>
    public Tensor LastHiddenState { get; }

    /// <summary>[B, H]: <see cref="LastHiddenState"/> at the end token (transformers' <c>pooler_output</c>).</summary>
    public Tensor PoolerOutput { get; }

    /// <summary>[B, P] projected embedding (<c>text_projection(pooler_output)</c>, not normalised); only for <see cref="CLIPTextModelWithProjection"/>.</summary>
    public Tensor? TextEmbeds { get; }

    /// <summary>When requested: the embeddings (index 0) then the output of every layer, without the final norm; otherwise empty.</summary>
    public IReadOnlyList<Tensor> HiddenStates { get; }

    /// <summary><c>hidden_states[-2]</c> (no final norm), or null when hidden states were not requested.</summary>
    public Tensor? PenultimateHiddenState => HiddenStates.Count >= 2 ? HiddenStates[^2] : null;

    /// <summary>Moves every tensor to the enclosing dispose scope.</summary>
    public ClipTextOutput MoveToOuterDisposeScope()
    {
        ClipOutputTensors.MoveToOuterDisposeScope([LastHiddenState, PoolerOutput, TextEmbeds], HiddenStates);
        return this;
    }

    /// <inheritdoc />
    public void Dispose() => ClipOutputTensors.Dispose([LastHiddenState, PoolerOutput, TextEmbeds], HiddenStates);
}

/// <summary>
/// transformers' <c>CLIPTextModel</c>: token + position embeddings, a causal pre-LN transformer and a final LayerNorm.
/// Parameter names equal the transformers keys (<c>text_model.embeddings.token_embedding.weight</c>, ...), so the
/// <c>text_encoder/</c> folder of a diffusers Stable Diffusion model loads with no key mapping.
/// </summary>
public sealed class CLIPTextModel : nn.Module<Tensor, Tensor>
{
    readonly ClipTextTransformer text_model;

    /// <summary>Builds the model with freshly initialised weights on <paramref name="device"/> (CPU if null; <c>meta</c> builds shapes only).</summary>
    public CLIPTextModel(ClipTextConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(CLIPTextModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("ClipTextConfig");
        Config = config;
        text_model = new ClipTextTransformer(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public ClipTextConfig Config { get; }

    /// <summary>Loads <c>config.json</c> and the weights (safetensors, sharded or <c>.bin</c>) of a Hugging Face folder.</summary>
    /// <param name="directory">Folder such as a diffusers model's <c>text_encoder/</c>.</param>
    /// <param name="dtype">Parameter dtype (default float32); weights are converted on load.</param>
    /// <param name="device">Target device (default CPU).</param>
    public static CLIPTextModel FromPretrained(string directory, ScalarType? dtype = null, Device? device = null)
    {
        var config = ClipTextConfig.FromFile(Path.Combine(directory, "config.json"));
        return ClipCheckpoint.LoadPretrained(directory, () => new CLIPTextModel(config, device, dtype ?? ScalarType.Float32),
            k => ClipTextPooling.IgnoredByTextTower(k, keepProjection: false));
    }

    /// <summary><c>last_hidden_state</c> [B, T, H] for input ids [B, T].</summary>
    public override Tensor forward(Tensor inputIds) => text_model.forward(ClipTextPooling.CheckIds(inputIds, Config));

    /// <summary>All outputs for input ids [B, T] (Int64). No attention mask is applied beyond CLIP's causal mask, as SD pipelines call it.</summary>
    public ClipTextOutput Encode(Tensor inputIds, bool outputHiddenStates = false) =>
        ClipTextPooling.Encode(text_model, null, inputIds, Config, outputHiddenStates);

    /// <summary>Applies the final LayerNorm to a hidden state (diffusers' <c>clip_skip</c> / LDM "penultimate" convention).</summary>
    public Tensor ApplyFinalLayerNorm(Tensor hidden) => text_model.FinalLayerNorm.forward(hidden);
}

/// <summary>
/// transformers' <c>CLIPTextModelWithProjection</c>: <see cref="CLIPTextModel"/>'s tower plus a bias-free
/// <c>text_projection</c>; <see cref="ClipTextOutput.TextEmbeds"/> is what CLIP retrieval compares with image embeddings.
/// </summary>
public sealed class CLIPTextModelWithProjection : nn.Module<Tensor, Tensor>
{
    readonly ClipTextTransformer text_model;
    readonly Linear text_projection;

    /// <summary>Builds the model with freshly initialised weights (<c>meta</c> device builds shapes only).</summary>
    public CLIPTextModelWithProjection(ClipTextConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(CLIPTextModelWithProjection))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("ClipTextConfig");
        Config = config;
        text_model = new ClipTextTransformer(config, device, dtype);
        text_projection = nn.Linear(config.HiddenSize, config.ProjectionDim, false, device, dtype);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public ClipTextConfig Config { get; }

    /// <summary>
    /// Loads a Hugging Face folder: a <c>CLIPTextModelWithProjection</c> folder or a full <c>CLIPModel</c> folder such as
    /// <c>openai/clip-vit-large-patch14</c> (the vision tower, <c>logit_scale</c> and <c>position_ids</c> buffers are ignored).
    /// </summary>
    public static CLIPTextModelWithProjection FromPretrained(string directory, ScalarType? dtype = null, Device? device = null)
    {
        var config = ClipTextConfig.FromFile(Path.Combine(directory, "config.json"));
        return ClipCheckpoint.LoadPretrained(directory, () => new CLIPTextModelWithProjection(config, device, dtype ?? ScalarType.Float32),
            k => ClipTextPooling.IgnoredByTextTower(k, keepProjection: true));
    }

    /// <summary>Projected text embeddings [B, P] (not normalised) for input ids [B, T].</summary>
    public override Tensor forward(Tensor inputIds)
    {
        using var output = Encode(inputIds);
        return output.TextEmbeds!.alias();
    }

    /// <summary>All outputs, including <see cref="ClipTextOutput.TextEmbeds"/>.</summary>
    public ClipTextOutput Encode(Tensor inputIds, bool outputHiddenStates = false) =>
        ClipTextPooling.Encode(text_model, text_projection, inputIds, Config, outputHiddenStates);
}

internal static class ClipTextPooling
{
    public static Tensor CheckIds(Tensor ids, ClipTextConfig c)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.ndim != 2) throw new ArgumentException($"input_ids must be [B, T], got [{string.Join(", ", ids.shape)}].", nameof(ids));
        if (ids.shape[1] > c.MaxPositionEmbeddings)
            throw new ArgumentException($"input_ids has {ids.shape[1]} positions, more than max_position_embeddings {c.MaxPositionEmbeddings}.", nameof(ids));
        if (ids.dtype != ScalarType.Int64 && ids.dtype != ScalarType.Int32)
            throw new ArgumentException($"input_ids must be an integer tensor, got {ids.dtype}.", nameof(ids));
        return ids;
    }

    /// <summary>
    /// The text towers' shared <c>Encode</c>: checks the ids, runs the tower, pools at the end token and, when
    /// <paramref name="projection"/> is given, projects the pooled state into <see cref="ClipTextOutput.TextEmbeds"/>.
    /// </summary>
    public static ClipTextOutput Encode(ClipTextTransformer tower, Linear? projection, Tensor inputIds, ClipTextConfig c, bool outputHiddenStates)
    {
        CheckIds(inputIds, c);
        using var scope = NewDisposeScope();
        var states = outputHiddenStates ? new List<Tensor>() : null;
        var last = tower.Run(inputIds, states);
        var pooled = Pool(last, inputIds, c);
        var embeds = projection?.forward(pooled);
        return new ClipTextOutput(last, pooled, embeds, (IReadOnlyList<Tensor>?)states ?? []).MoveToOuterDisposeScope();
    }

    /// <summary>Hidden state at the end token: argmax(ids) for the legacy eos id 2 (as transformers), else the first eos.</summary>
    public static Tensor Pool(Tensor last, Tensor ids, ClipTextConfig c)
    {
        using var scope = NewDisposeScope();
        var ids64 = ids.to(ScalarType.Int64);
        var position = c.EosTokenId == 2
            ? ids64.argmax(-1)
            : ids64.eq(c.EosTokenId).to(ScalarType.Int32).argmax(-1);
        var rows = arange(last.shape[0], ScalarType.Int64, last.device);
        return last[rows, position.to(last.device)].MoveToOuterDisposeScope();
    }

    public static bool IgnoredByTextTower(string key, bool keepProjection) =>
        ClipCheckpoint.IgnoredByTower(key, "vision_model.", "visual_projection.") ||
        (!keepProjection && key.StartsWith("text_projection.", StringComparison.Ordinal));
}
