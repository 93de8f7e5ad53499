using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Evaluation;

/// <summary>Encodes texts and preprocessed images into CLIP's joint space (for example <c>openai/clip-vit-large-patch14</c>).</summary>
public interface IClipEmbedder
{
    /// <summary>Square input resolution the image tower expects (224 for ViT-L/14).</summary>
    int ImageSize { get; }

    /// <summary>Projected text embeddings [N, D] (not normalised).</summary>
    Tensor EmbedTexts(IReadOnlyList<string> texts);

    /// <summary>Projected image embeddings [N, D] (not normalised) of CLIP-normalised pixels [N, 3, S, S].</summary>
    Tensor EmbedImages(Tensor pixelValues);
}

/// <summary>Options of the CLIP evaluation. Defaults reproduce ScaleDreamer's <c>evaluation_amortized.py</c>.</summary>
public sealed record ClipEvaluationOptions
{
    /// <summary>
    /// Apply the reference's text handling to in-memory prompts: its output folders drop <c>,</c> and <c>.</c> and the
    /// script turns <c>_</c> back into spaces, so CLIP never sees commas, full stops or underscores. Default true.
    /// </summary>
    public bool RemovePunctuation { get; init; } = true;

    /// <summary>Logit scale of the retrieval softmax: the literal 100 of the script (not the checkpoint's <c>logit_scale</c>).</summary>
    public double LogitScale { get; init; } = 100.0;

    /// <summary>Images (and texts) per model call; the script uses 120.</summary>
    public int BatchSize { get; init; } = 120;

    /// <summary>
    /// Truncate prompts longer than 75 BPE tokens. The script tokenises without truncation and fails on such prompts;
    /// an embedder may honour this flag. Default true.
    /// </summary>
    public bool TruncateLongPrompts { get; init; } = true;
}

/// <summary>Metrics of one prompt.</summary>
/// <param name="Prompt">The prompt as given (or the folder name for folder evaluation).</param>
/// <param name="Text">The text CLIP encoded.</param>
/// <param name="ImageCount">Number of images (views) evaluated; 0 for a candidate-only prompt.</param>
/// <param name="Similarity">Mean cosine between each image and this prompt's text (NaN without images).</param>
/// <param name="RecallAt1">Fraction of images whose best-matching text among all candidates is this prompt's (NaN without images).</param>
/// <param name="ImageSimilarities">Per image cosine with its own text.</param>
/// <param name="ImageArgmax">Per image index of the best-matching candidate text.</param>
public sealed record ClipPromptMetrics(string Prompt, string Text, int ImageCount, double Similarity, double RecallAt1,
    IReadOnlyList<double> ImageSimilarities, IReadOnlyList<int> ImageArgmax);

/// <summary>Result of a CLIP evaluation.</summary>
/// <param name="Prompts">Per prompt, in candidate order (prompts without images included, with NaN metrics).</param>
/// <param name="Similarity">Mean over prompts that have images of their <see cref="ClipPromptMetrics.Similarity"/>.</param>
/// <param name="RecallAt1">Mean over prompts that have images of their <see cref="ClipPromptMetrics.RecallAt1"/>.</param>
/// <param name="CandidateCount">Number of candidate texts in the retrieval softmax (every prompt, with or without images).</param>
public sealed record ClipEvaluationResult(IReadOnlyList<ClipPromptMetrics> Prompts, double Similarity, double RecallAt1, int CandidateCount);

/// <summary>
/// CLIP similarity and retrieval R@1 exactly as ScaleDreamer's evaluation defines them. Embeddings are L2-normalised in
/// float32; similarity is the plain cosine (no ×100, no clamp); an image is correct when the argmax of
/// <c>softmax(100·cos)</c> over <b>all</b> candidate prompts (first index on ties) is its own prompt. Per prompt values
/// are a double-precision mean of the float32 per-image values; the overall values weight every prompt with images equally.
/// A prompt without images is skipped in both averages but stays a retrieval candidate (the reference's quirk).
/// </summary>
public static class ClipMetrics
{
    /// <summary>The name ScaleDreamer's test step gives a prompt's output folder: <c>,</c> and <c>.</c> removed, spaces → <c>_</c>.</summary>
    public static string FolderName(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return prompt.Replace(",", "", StringComparison.Ordinal).Replace(".", "", StringComparison.Ordinal).Replace(' ', '_');
    }

    /// <summary>The text the reference encodes for a prompt: the folder round trip (<c>FolderName(p).Replace('_', ' ')</c>) when
    /// <paramref name="removePunctuation"/>, else the prompt unchanged.</summary>
    public static string EvaluationText(string prompt, bool removePunctuation = true) =>
        removePunctuation ? FolderName(prompt).Replace('_', ' ') : prompt;

    /// <summary>
    /// Computes both metrics from raw (un-normalised) embeddings.
    /// </summary>
    /// <param name="prompts">Prompt labels in candidate order.</param>
    /// <param name="texts">Texts that were encoded (same order).</param>
    /// <param name="textEmbeds">[P, D] text embeddings, one per prompt.</param>
    /// <param name="imageEmbeds">Per prompt [N_p, D] image embeddings, or null / zero rows for a prompt without images.</param>
    /// <param name="logitScale">Softmax scale (100 in the reference).</param>
    public static ClipEvaluationResult Compute(IReadOnlyList<string> prompts, IReadOnlyList<string> texts, Tensor textEmbeds,
        IReadOnlyList<Tensor?> imageEmbeds, double logitScale = 100.0)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(textEmbeds);
        ArgumentNullException.ThrowIfNull(imageEmbeds);
        int p = prompts.Count;
        if (texts.Count != p || imageEmbeds.Count != p || textEmbeds.ndim != 2 || textEmbeds.shape[0] != p)
            throw new ArgumentException($"Expected {p} prompts, texts, image sets and a [{p}, D] text tensor; got {texts.Count} texts, {imageEmbeds.Count} image sets, text [{string.Join(", ", textEmbeds.shape)}].");
        if (p == 0) throw new ArgumentException("No prompts to evaluate.", nameof(prompts));
        using var scope = NewDisposeScope();
        var t = textEmbeds.detach().to(ScalarType.Float32, CPU);
        t = t / t.norm(-1, true);
        var results = new List<ClipPromptMetrics>(p);
        double simSum = 0, recallSum = 0;
        int withImages = 0;
        for (int idx = 0; idx < p; idx++)
        {
            var raw = imageEmbeds[idx];
            if (raw is null || raw.numel() == 0)
            {
                results.Add(new ClipPromptMetrics(prompts[idx], texts[idx], 0, double.NaN, double.NaN, [], []));
                continue;
            }
            if (raw.ndim != 2 || raw.shape[1] != t.shape[1])
                throw new ArgumentException($"Image embeddings of prompt {idx} must be [N, {t.shape[1]}], got [{string.Join(", ", raw.shape)}].", nameof(imageEmbeds));
            var img = raw.detach().to(ScalarType.Float32, CPU);
            img = img / img.norm(-1, true);
            var cos = img.matmul(t.t());
            var prob = (cos * logitScale).softmax(-1);
            int n = (int)img.shape[0];
            var cosHost = cos.contiguous().data<float>().ToArray();
            var probHost = prob.contiguous().data<float>().ToArray();
            var sims = new double[n];
            var argmax = new int[n];
            double s = 0, r = 0;
            for (int i = 0; i < n; i++)
            {
                sims[i] = cosHost[i * p + idx];
                int best = 0;
                for (int j = 1; j < p; j++)
                    if (probHost[i * p + j] > probHost[i * p + best]) best = j;
                argmax[i] = best;
                s += sims[i];
                r += best == idx ? 1.0 : 0.0;
            }
            double sim = s / n, rec = r / n;
            results.Add(new ClipPromptMetrics(prompts[idx], texts[idx], n, sim, rec, sims, argmax));
            simSum += sim;
            recallSum += rec;
            withImages++;
        }
        if (withImages == 0) throw new ArgumentException("No prompt has any image to evaluate.", nameof(imageEmbeds));
        return new ClipEvaluationResult(results, simSum / withImages, recallSum / withImages, p);
    }
}
