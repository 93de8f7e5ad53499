using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Evaluation;
using ScoreDistillation.Tests.Infrastructure;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Evaluation;

public class ClipMetricsTests
{
    sealed record Case(string Name, string[] Folders, float[][] Text, Dictionary<int, float[][]> Images, JsonElement Root);

    static List<Case> Cases()
    {
        using var doc = TestVectors.LoadJson("clip-eval", "retrieval_case.json");
        var list = new List<Case>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            var folders = c.GetProperty("script_candidate_order_os_listdir").EnumerateArray().Select(e => e.GetString()!).ToArray();
            var text = c.GetProperty("text_embeds_raw").EnumerateArray().Select(Row).ToArray();
            var images = c.GetProperty("image_embeds_raw").EnumerateObject()
                .ToDictionary(p => int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture), p => p.Value.EnumerateArray().Select(Row).ToArray());
            list.Add(new Case(c.GetProperty("name").GetString()!, folders, text, images, c.Clone()));
        }
        return list;
    }

    static float[] Row(JsonElement e) => e.EnumerateArray().Select(x => x.GetSingle()).ToArray();

    static Tensor Matrix(float[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, rows[0].Length });

    static void AssertMatchesReference(ClipEvaluationResult result, Case c)
    {
        var perPrompt = c.Root.GetProperty("per_prompt");
        var sims = perPrompt.GetProperty("similarity").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var recalls = perPrompt.GetProperty("recall_at_1").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var withImages = result.Prompts.Where(p => p.ImageCount > 0).ToList();
        withImages.Should().HaveCount(sims.Length);
        for (int i = 0; i < sims.Length; i++)
        {
            withImages[i].Similarity.Should().BeApproximately(sims[i], 1e-6, $"similarity of prompt {i} in {c.Name}");
            withImages[i].RecallAt1.Should().Be(recalls[i], $"R@1 of prompt {i} in {c.Name}");
        }
        var overall = c.Root.GetProperty("overall");
        result.Similarity.Should().BeApproximately(overall.GetProperty("similarity").GetDouble(), 1e-6);
        result.RecallAt1.Should().Be(overall.GetProperty("recall_at_1").GetDouble());
        result.CandidateCount.Should().Be(c.Folders.Length);
        foreach (var img in c.Root.GetProperty("per_image").EnumerateArray())
        {
            var p = result.Prompts[img.GetProperty("prompt").GetInt32()];
            int v = img.GetProperty("view").GetInt32();
            p.ImageArgmax[v].Should().Be(img.GetProperty("argmax").GetInt32());
            p.ImageSimilarities[v].Should().BeApproximately(img.GetProperty("cosine_own_prompt").GetDouble(), 1e-6);
        }
        Console.WriteLine($"{c.Name}: similarity {result.Similarity:R} (reference {overall.GetProperty("similarity").GetDouble():R}), R@1 {result.RecallAt1:R}");
    }

    [Fact]
    public void Worked_retrieval_examples_match_including_the_imageless_candidate()
    {
        using var scope = NewDisposeScope();
        foreach (var c in Cases())
        {
            var labels = c.Folders;
            var texts = labels.Select(f => f.Replace('_', ' ')).ToArray();
            var images = Enumerable.Range(0, labels.Length).Select(i => c.Images.TryGetValue(i, out var m) ? Matrix(m) : null).ToList();
            var result = ClipMetrics.Compute(labels, texts, Matrix(c.Text), images);
            AssertMatchesReference(result, c);
        }
        var second = Cases()[1];
        second.Root.GetProperty("overall").GetProperty("recall_at_1").GetDouble().Should().Be(0.5833333333333334);
    }

    [Fact]
    public void Evaluation_text_follows_the_folder_round_trip()
    {
        ClipMetrics.FolderName("A beautiful dress, on a mannequin. Studio lighting.").Should().Be("A_beautiful_dress_on_a_mannequin_Studio_lighting");
        ClipMetrics.EvaluationText("a snake_case prompt, v1.5").Should().Be("a snake case prompt v15");
        ClipMetrics.EvaluationText("keep, it.", removePunctuation: false).Should().Be("keep, it.");
    }

    /// <summary>Stands in for CLIP as the reference's own check did: a flat left-panel colour codes (prompt, view).</summary>
    sealed class ColourCodedEmbedder(Case c) : IClipEmbedder
    {
        public int ImageSize => 224;

        public Tensor EmbedTexts(IReadOnlyList<string> texts) =>
            Matrix(texts.Select(t => c.Text[Array.IndexOf(c.Folders, t.Replace(' ', '_'))]).ToArray());

        public Tensor EmbedImages(Tensor pixelValues)
        {
            var rows = new List<float[]>();
            for (long i = 0; i < pixelValues.shape[0]; i++)
            {
                int Level(int ch) => (int)Math.Round((pixelValues[i, ch, 100, 100].item<float>() * ClipImagePreprocessor.Std[ch] + ClipImagePreprocessor.Mean[ch]) * 255);
                rows.Add(c.Images[(Level(0) - 10) / 40][(Level(1) - 10) / 40]);
            }
            return Matrix(rows.ToArray());
        }
    }

    static void WritePanel(string path, int prompt, int view)
    {
        // [rgb | normal | opacity | depth] panels of 16x16; only the left one matters.
        var info = new SKImageInfo(64, 16, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bmp = new SKBitmap(info);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 64; x++)
                bmp.SetPixel(x, y, x < 16 ? new SKColor((byte)(10 + 40 * prompt), (byte)(10 + 40 * view), 77) : new SKColor(250, 3, 3));
        using var stream = File.Create(path);
        bmp.Encode(stream, SKEncodedImageFormat.Png, 100);
    }

    [Fact]
    public void Folder_evaluation_reproduces_the_script_and_writes_reports()
    {
        var c = Cases()[1];
        string root = Directory.CreateTempSubdirectory("clipeval").FullName;
        try
        {
            for (int p = 0; p < c.Folders.Length; p++)
            {
                string dir = Directory.CreateDirectory(Path.Combine(root, "renders", c.Folders[p])).FullName;
                if (c.Images.TryGetValue(p, out var views))
                    for (int v = 0; v < views.Length; v++) WritePanel(Path.Combine(dir, $"{v}.png"), p, v);
                else File.WriteAllText(Path.Combine(dir, "note.txt"), "no images");
            }
            var evaluator = new ClipEvaluator(new ColourCodedEmbedder(c), new ClipEvaluationOptions { BatchSize = 3 });
            var result = evaluator.EvaluateFolder(Path.Combine(root, "renders"));
            AssertMatchesReference(result, c);

            string outDir = Path.Combine(root, "report");
            ClipEvaluator.WriteReports(result, outDir, "tiny");
            File.ReadAllText(Path.Combine(outDir, "recall.txt")).Should().EndWith("avgerage: 0.5833333333333334\n");
            File.ReadAllText(Path.Combine(outDir, "clip_evaluation.md")).Should().Contain("| **overall** |");
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "clip_evaluation.json")));
            json.RootElement.GetProperty("candidates").GetInt32().Should().Be(4);
            json.RootElement.GetProperty("prompts")[3].GetProperty("similarity").ValueKind.Should().Be(JsonValueKind.Null);

            // A malformed image names its file; a folder without prompt folders or images says so.
            File.WriteAllBytes(Path.Combine(root, "renders", c.Folders[0], "9.png"), new byte[] { 1, 2, 3 });
            var bad = () => evaluator.EvaluateFolder(Path.Combine(root, "renders"));
            bad.Should().Throw<InvalidDataException>().WithMessage("*9.png*");
            Directory.CreateDirectory(Path.Combine(root, "empty"));
            var empty = () => evaluator.EvaluateFolder(Path.Combine(root, "empty"));
            empty.Should().Throw<InvalidDataException>().WithMessage("*no prompt folders*");
            Directory.CreateDirectory(Path.Combine(root, "empty", "a_prompt"));
            empty.Should().Throw<InvalidDataException>().WithMessage("*No images*");
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void In_memory_evaluation_treats_prompts_without_images_as_candidates()
    {
        using var scope = NewDisposeScope();
        var c = Cases()[1];
        // Pixel tensors whose centre pixel codes (prompt, view) for the colour-coded stub.
        ClipPromptImages Prompt(int p)
        {
            string text = c.Folders[p].Replace('_', ' ');
            if (!c.Images.TryGetValue(p, out var views)) return new ClipPromptImages(text, null);
            var px = new List<Tensor>();
            for (int v = 0; v < views.Length; v++)
            {
                var rgb = new byte[224 * 224 * 3];
                for (int i = 0; i < rgb.Length; i += 3) { rgb[i] = (byte)(10 + 40 * p); rgb[i + 1] = (byte)(10 + 40 * v); rgb[i + 2] = 77; }
                px.Add(ClipImagePreprocessor.ToPixelValues(new RgbImage(224, 224, rgb)));
            }
            return new ClipPromptImages(text, stack(px));
        }
        var evaluator = new ClipEvaluator(new ColourCodedEmbedder(c));
        var result = evaluator.Evaluate(Enumerable.Range(0, c.Folders.Length).Select(Prompt).ToList());
        result.RecallAt1.Should().Be(0.5833333333333334);
        result.Prompts[3].ImageCount.Should().Be(0);
        double.IsNaN(result.Prompts[3].Similarity).Should().BeTrue();
    }
}
