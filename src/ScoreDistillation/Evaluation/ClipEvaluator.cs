using System.Globalization;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Evaluation;

/// <summary>The images of one prompt for <see cref="ClipEvaluator.Evaluate"/>.</summary>
/// <param name="Prompt">The prompt text (the evaluated text follows <see cref="ClipEvaluationOptions.RemovePunctuation"/>).</param>
/// <param name="PixelValues">[N, 3, S, S] CLIP-normalised pixels (see <see cref="ClipImagePreprocessor"/>), or null for a
/// prompt that is only a retrieval candidate.</param>
public sealed record ClipPromptImages(string Prompt, Tensor? PixelValues);

/// <summary>
/// Runs ScaleDreamer's CLIP evaluation: encodes every prompt (one retrieval candidate each) and every image, then computes
/// CLIP similarity and R@1 with <see cref="ClipMetrics"/>, and writes JSON / Markdown reports.
/// </summary>
public sealed class ClipEvaluator
{
    static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp"];
    readonly IClipEmbedder _embedder;

    /// <summary>Creates an evaluator over a CLIP embedder (for example <c>ClipEmbedder</c> of ScoreDistillation.Diffusion).</summary>
    public ClipEvaluator(IClipEmbedder embedder, ClipEvaluationOptions? options = null)
    {
        _embedder = embedder ?? throw new ArgumentNullException(nameof(embedder));
        Options = options ?? new ClipEvaluationOptions();
        if (Options.BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"BatchSize must be positive, got {Options.BatchSize}.");
    }

    /// <summary>The options in effect.</summary>
    public ClipEvaluationOptions Options { get; }

    /// <summary>Evaluates images already in memory, one entry per prompt (all prompts are retrieval candidates).</summary>
    public ClipEvaluationResult Evaluate(IReadOnlyList<ClipPromptImages> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("No prompts to evaluate.", nameof(prompts));
        var texts = prompts.Select(p => ClipMetrics.EvaluationText(p.Prompt, Options.RemovePunctuation)).ToList();
        return Run(prompts.Select(p => p.Prompt).ToList(), texts,
            prompts.Select(p => (Func<IEnumerable<Tensor>>?)(p.PixelValues is null ? null : () => Batches(p.PixelValues))).ToList());
    }

    /// <summary>
    /// Evaluates a test render folder as the reference script does: one sub-folder per prompt (named by
    /// <see cref="ClipMetrics.FolderName"/>, the encoded text is the name with <c>_</c> → space), every <c>.png/.jpg/.jpeg/.bmp</c>
    /// inside it preprocessed with <see cref="ClipImagePreprocessor.LoadAndPreprocess"/> (left square of the panel). Folders
    /// are taken in ordinal order (the script's <c>os.listdir</c> order is unspecified; it only matters for exact ties).
    /// </summary>
    public ClipEvaluationResult EvaluateFolder(string resultDirectory)
    {
        ArgumentNullException.ThrowIfNull(resultDirectory);
        if (!Directory.Exists(resultDirectory)) throw new DirectoryNotFoundException($"Result folder not found: {resultDirectory}");
        var folders = Directory.GetDirectories(resultDirectory).OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal).ToList();
        if (folders.Count == 0) throw new InvalidDataException($"{resultDirectory} holds no prompt folders (expected one sub-folder of images per prompt).");
        var names = folders.Select(f => Path.GetFileName(f)!).ToList();
        var files = folders.Select(f => Directory.GetFiles(f)
            .Where(p => ImageExtensions.Any(e => p.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
            .OrderBy(p => p, StringComparer.Ordinal).ToList()).ToList();
        if (files.All(f => f.Count == 0))
            throw new InvalidDataException($"No images (.png, .jpg, .jpeg, .bmp) in any of the {folders.Count} prompt folders of {resultDirectory}.");
        var loaders = files.Select(list => list.Count == 0 ? null : (Func<IEnumerable<Tensor>>)(() => LoadBatches(list))).ToList();
        return Run(names, names.Select(n => n.Replace('_', ' ')).ToList(), loaders);
    }

    IEnumerable<Tensor> LoadBatches(List<string> paths)
    {
        for (int start = 0; start < paths.Count; start += Options.BatchSize)
        {
            var chunk = paths.Skip(start).Take(Options.BatchSize).ToList();
            var tensors = new List<Tensor>(chunk.Count);
            try
            {
                foreach (var p in chunk) tensors.Add(ClipImagePreprocessor.LoadAndPreprocess(p, _embedder.ImageSize));
                yield return stack(tensors);
            }
            finally
            {
                foreach (var t in tensors) t.Dispose();
            }
        }
    }

    IEnumerable<Tensor> Batches(Tensor pixels)
    {
        if (pixels.ndim != 4 || pixels.shape[1] != 3)
            throw new ArgumentException($"Pixel values must be [N, 3, S, S], got [{string.Join(", ", pixels.shape)}].", nameof(pixels));
        for (long start = 0; start < pixels.shape[0]; start += Options.BatchSize)
            yield return pixels[TensorIndex.Slice(start, Math.Min(start + Options.BatchSize, pixels.shape[0]))];
    }

    ClipEvaluationResult Run(IReadOnlyList<string> labels, IReadOnlyList<string> texts, IReadOnlyList<Func<IEnumerable<Tensor>>?> images)
    {
        using var scope = NewDisposeScope();
        var textChunks = new List<Tensor>();
        using (no_grad())
        {
            for (int start = 0; start < texts.Count; start += Options.BatchSize)
                textChunks.Add(_embedder.EmbedTexts(texts.Skip(start).Take(Options.BatchSize).ToList()).to(ScalarType.Float32, CPU));
        }
        var textEmbeds = cat(textChunks, 0);
        var imageEmbeds = new List<Tensor?>(labels.Count);
        foreach (var load in images)
        {
            if (load is null) { imageEmbeds.Add(null); continue; }
            var parts = new List<Tensor>();
            foreach (var batch in load())
            {
                using (var inner = NewDisposeScope())
                using (no_grad())
                    parts.Add(_embedder.EmbedImages(batch).to(ScalarType.Float32, CPU).MoveToOuterDisposeScope());
                batch.Dispose();
            }
            imageEmbeds.Add(parts.Count == 0 ? null : cat(parts, 0));
        }
        return ClipMetrics.Compute(labels, texts, textEmbeds, imageEmbeds, Options.LogitScale);
    }

    /// <summary>
    /// Writes <c>clip_evaluation.json</c> and <c>clip_evaluation.md</c> (per prompt and overall CLIP similarity and R@1), plus
    /// <c>similarity.txt</c> and <c>recall.txt</c> in the reference script's format (including its <c>avgerage</c> spelling).
    /// </summary>
    public static void WriteReports(ClipEvaluationResult result, string outputDirectory, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(outputDirectory);
        Directory.CreateDirectory(outputDirectory);
        var ci = CultureInfo.InvariantCulture;
        static double? Num(double v) => double.IsNaN(v) ? null : v;
        var json = new
        {
            title,
            model_note = "CLIP similarity = mean cosine(image, own prompt); R@1 = share of images whose argmax softmax(100·cos) over all candidate prompts is their own",
            candidates = result.CandidateCount,
            similarity = result.Similarity,
            recall_at_1 = result.RecallAt1,
            prompts = result.Prompts.Select(p => new
            {
                prompt = p.Prompt,
                text = p.Text,
                images = p.ImageCount,
                similarity = Num(p.Similarity),
                recall_at_1 = Num(p.RecallAt1),
            }),
        };
        File.WriteAllText(Path.Combine(outputDirectory, "clip_evaluation.json"),
            JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));

        var md = new StringBuilder();
        md.AppendLine(ci, $"# {title ?? "CLIP evaluation"}").AppendLine();
        md.AppendLine(ci, $"{result.Prompts.Count(p => p.ImageCount > 0)} prompts with images, {result.CandidateCount} retrieval candidates.").AppendLine();
        md.AppendLine("| # | Prompt | Images | CLIP similarity | R@1 |");
        md.AppendLine("|---:|---|---:|---:|---:|");
        for (int i = 0; i < result.Prompts.Count; i++)
        {
            var p = result.Prompts[i];
            string sim = p.ImageCount > 0 ? p.Similarity.ToString("F4", ci) : "–";
            string rec = p.ImageCount > 0 ? p.RecallAt1.ToString("F4", ci) : "–";
            md.AppendLine(ci, $"| {i} | {p.Text.Replace("|", "\\|", StringComparison.Ordinal)} | {p.ImageCount} | {sim} | {rec} |");
        }
        md.AppendLine(ci, $"| | **overall** | {result.Prompts.Sum(p => p.ImageCount)} | **{result.Similarity:F4}** | **{result.RecallAt1:F4}** |");
        File.WriteAllText(Path.Combine(outputDirectory, "clip_evaluation.md"), md.ToString());

        void Txt(string name, Func<ClipPromptMetrics, double> value, double overall)
        {
            var sb = new StringBuilder();
            foreach (var p in result.Prompts.Where(p => p.ImageCount > 0))
                sb.Append(ci, $"{p.Prompt}: {value(p).ToString("R", ci)}\n");
            sb.Append(ci, $"avgerage: {overall.ToString("R", ci)}\n");
            File.WriteAllText(Path.Combine(outputDirectory, name), sb.ToString());
        }
        Txt("similarity.txt", p => p.Similarity, result.Similarity);
        Txt("recall.txt", p => p.RecallAt1, result.RecallAt1);
    }
}
