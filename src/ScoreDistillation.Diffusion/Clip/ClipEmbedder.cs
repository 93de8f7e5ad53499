using ScoreDistillation.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Clip;

/// <summary>
/// A CLIP model for evaluation (<see cref="IClipEmbedder"/>): transformers' slow-tokenizer behaviour, a
/// <see cref="CLIPTextModelWithProjection"/> and a <see cref="CLIPVisionModelWithProjection"/>, all loaded from one Hugging Face
/// <c>CLIPModel</c> folder such as a local copy of <c>openai/clip-vit-large-patch14</c>.
/// </summary>
public sealed class ClipEmbedder : IClipEmbedder, IDisposable
{
    readonly bool _truncate;

    /// <summary>Wraps already-built parts (they are disposed with this object).</summary>
    public ClipEmbedder(ClipTokenizer tokenizer, CLIPTextModelWithProjection textModel, CLIPVisionModelWithProjection visionModel, bool truncateLongPrompts = true)
    {
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        TextModel = textModel ?? throw new ArgumentNullException(nameof(textModel));
        VisionModel = visionModel ?? throw new ArgumentNullException(nameof(visionModel));
        _truncate = truncateLongPrompts;
    }

    /// <summary>Loads tokenizer (<c>vocab.json</c>, <c>merges.txt</c>), text and vision towers from one folder.</summary>
    /// <param name="directory">A <c>CLIPModel</c> folder (<c>config.json</c> with <c>text_config</c>/<c>vision_config</c>, weights, tokenizer files).</param>
    /// <param name="dtype">Parameter dtype (default float32).</param>
    /// <param name="device">Device (default CPU).</param>
    /// <param name="truncateLongPrompts">Truncate prompts over 75 BPE tokens (the reference script fails on them instead).</param>
    public static ClipEmbedder FromPretrained(string directory, ScalarType? dtype = null, Device? device = null, bool truncateLongPrompts = true)
    {
        var tokenizer = ClipTokenizer.FromPretrained(directory);
        var text = CLIPTextModelWithProjection.FromPretrained(directory, dtype, device);
        try
        {
            var vision = CLIPVisionModelWithProjection.FromPretrained(directory, dtype, device);
            return new ClipEmbedder(tokenizer, text, vision, truncateLongPrompts);
        }
        catch
        {
            text.Dispose();
            throw;
        }
    }

    /// <summary>The tokenizer.</summary>
    public ClipTokenizer Tokenizer { get; }

    /// <summary>The text tower with projection.</summary>
    public CLIPTextModelWithProjection TextModel { get; }

    /// <summary>The vision tower with projection.</summary>
    public CLIPVisionModelWithProjection VisionModel { get; }

    /// <inheritdoc />
    public int ImageSize => VisionModel.Config.ImageSize;

    /// <inheritdoc />
    public Tensor EmbedTexts(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var device = TextModel.parameters().First().device;
        var ids = Tokenizer.EncodeBatch(texts, device, _truncate);
        return TextModel.forward(ids).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor EmbedImages(Tensor pixelValues)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var p = VisionModel.parameters().First();
        return VisionModel.forward(pixelValues.to(p.dtype, p.device)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        TextModel.Dispose();
        VisionModel.Dispose();
    }
}
