using System.Text.Json;
using System.Text.Json.Serialization;

namespace ScoreDistillation.Diffusion.Clip;

/// <summary>
/// Hugging Face <c>CLIPTextConfig</c> as written in a <c>config.json</c> (a diffusers <c>text_encoder/</c> folder, or the
/// <c>text_config</c> part of a full <c>CLIPModel</c> folder such as <c>openai/clip-vit-large-patch14</c>).
/// Defaults are transformers' defaults.
/// </summary>
public sealed record ClipTextConfig
{
    /// <summary>Vocabulary size (49,408 for the CLIP BPE vocabulary).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 49408;

    /// <summary>Width of the transformer.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 512;

    /// <summary>Width of the MLP's hidden layer.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 2048;

    /// <summary>Output width of <c>text_projection</c>.</summary>
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; init; } = 512;

    /// <summary>Number of encoder layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;

    /// <summary>Number of attention heads (HiddenSize must divide evenly).</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 8;

    /// <summary>Number of positions (77).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 77;

    /// <summary>MLP activation: <c>quick_gelu</c>, <c>gelu</c>, <c>gelu_new</c>/<c>gelu_pytorch_tanh</c>/<c>gelu_fast</c>, or <c>relu</c>.</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "quick_gelu";

    /// <summary>LayerNorm epsilon.</summary>
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-5;

    /// <summary>Pad token id as the config states it (the legacy SD configs say 1).</summary>
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; init; } = 1;

    /// <summary>Start token id as the config states it.</summary>
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; init; } = 49406;

    /// <summary>
    /// End token id. The legacy value 2 (SD 1.5/2.x, openai CLIP configs) makes pooling take <c>argmax(input_ids)</c>, as
    /// transformers does; any other value pools at the first occurrence of that id.
    /// </summary>
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; init; } = 49407;

    /// <summary>Head width.</summary>
    [JsonIgnore] public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>The text tower of <c>openai/clip-vit-large-patch14</c> (also the SD 1.5 text encoder).</summary>
    public static ClipTextConfig VitL14 { get; } = new()
    {
        HiddenSize = 768, IntermediateSize = 3072, ProjectionDim = 768, NumHiddenLayers = 12, NumAttentionHeads = 12,
        BosTokenId = 0, EosTokenId = 2,
    };

    /// <summary>Reads a <c>config.json</c>; a full <c>CLIPModel</c> config contributes its <c>text_config</c>.</summary>
    public static ClipTextConfig FromFile(string path) => ClipConfigReader.Read<ClipTextConfig>(path, "text_config");

    internal void Validate(string source)
    {
        if (HiddenSize <= 0 || NumAttentionHeads <= 0 || HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.");
        if (NumHiddenLayers <= 0 || IntermediateSize <= 0 || VocabSize <= 0 || MaxPositionEmbeddings <= 0)
            throw new InvalidDataException($"{source}: sizes must be positive (layers {NumHiddenLayers}, intermediate {IntermediateSize}, vocab {VocabSize}, positions {MaxPositionEmbeddings}).");
        ClipActivation.Check(HiddenAct, source);
    }
}

/// <summary>
/// Hugging Face <c>CLIPVisionConfig</c> as written in a <c>config.json</c> (or the <c>vision_config</c> part of a full
/// <c>CLIPModel</c> folder). Defaults are transformers' defaults (ViT-B/32).
/// </summary>
public sealed record ClipVisionConfig
{
    /// <summary>Width of the transformer.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;

    /// <summary>Width of the MLP's hidden layer.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;

    /// <summary>Output width of <c>visual_projection</c>.</summary>
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; init; } = 512;

    /// <summary>Number of encoder layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;

    /// <summary>Number of attention heads.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 12;

    /// <summary>Input channels.</summary>
    [JsonPropertyName("num_channels")] public int NumChannels { get; init; } = 3;

    /// <summary>Input resolution (square).</summary>
    [JsonPropertyName("image_size")] public int ImageSize { get; init; } = 224;

    /// <summary>Patch size (square, stride equal to the size).</summary>
    [JsonPropertyName("patch_size")] public int PatchSize { get; init; } = 32;

    /// <summary>MLP activation (see <see cref="ClipTextConfig.HiddenAct"/>).</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "quick_gelu";

    /// <summary>LayerNorm epsilon.</summary>
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-5;

    /// <summary>Head width.</summary>
    [JsonIgnore] public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Patches per image.</summary>
    [JsonIgnore] public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    /// <summary>Positions: the class token plus one per patch.</summary>
    [JsonIgnore] public int NumPositions => NumPatches + 1;

    /// <summary>The vision tower of <c>openai/clip-vit-large-patch14</c>.</summary>
    public static ClipVisionConfig VitL14 { get; } = new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, ProjectionDim = 768, NumHiddenLayers = 24, NumAttentionHeads = 16,
        ImageSize = 224, PatchSize = 14,
    };

    /// <summary>Reads a <c>config.json</c>; a full <c>CLIPModel</c> config contributes its <c>vision_config</c>.</summary>
    public static ClipVisionConfig FromFile(string path) => ClipConfigReader.Read<ClipVisionConfig>(path, "vision_config");

    internal void Validate(string source)
    {
        if (HiddenSize <= 0 || NumAttentionHeads <= 0 || HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.");
        if (PatchSize <= 0 || ImageSize < PatchSize || NumHiddenLayers <= 0 || IntermediateSize <= 0 || NumChannels <= 0)
            throw new InvalidDataException($"{source}: invalid sizes (image {ImageSize}, patch {PatchSize}, layers {NumHiddenLayers}, intermediate {IntermediateSize}, channels {NumChannels}).");
        ClipActivation.Check(HiddenAct, source);
    }
}

internal static class ClipConfigReader
{
    public static T Read<T>(string path, string nestedName) where T : class
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CLIP config not found: {path}", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        JsonElement src = root;
        if (root.TryGetProperty(nestedName, out var nested) && nested.ValueKind == JsonValueKind.Object)
        {
            // A CLIPModel config: the tower's own keys win, the top-level projection_dim fills a gap.
            var merged = new Dictionary<string, JsonElement>();
            foreach (var p in nested.EnumerateObject()) merged[p.Name] = p.Value;
            if (!merged.ContainsKey("projection_dim") && root.TryGetProperty("projection_dim", out var pd)) merged["projection_dim"] = pd;
            return JsonSerializer.Deserialize<T>(JsonSerializer.Serialize(merged))
                   ?? throw new InvalidDataException($"{path}: '{nestedName}' is empty.");
        }
        return src.Deserialize<T>() ?? throw new InvalidDataException($"{path}: empty config.");
    }
}
