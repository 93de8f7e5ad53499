using System.Text.Json;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Clip;

/// <summary>Builds Hugging Face style model folders (config.json + weights) from the reference vector files.</summary>
internal static class ClipTestFolders
{
    /// <summary>Splits a vector file into weights and the __input__/__output__ tensors.</summary>
    public static (Dictionary<string, Tensor> Weights, Dictionary<string, Tensor> Data) Split(Dictionary<string, Tensor> all)
    {
        var w = all.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var d = all.Where(kv => kv.Key.StartsWith("__", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return (w, d);
    }

    /// <summary>A temporary folder with config.json (the vector JSON's "config") and model.safetensors holding <paramref name="weights"/>.</summary>
    public static string Create(string area, string jsonName, IReadOnlyDictionary<string, Tensor> weights, string weightsName = "model.safetensors")
    {
        string dir = Directory.CreateTempSubdirectory("clipmodel").FullName;
        using (var doc = TestVectors.LoadJson(area, jsonName))
            File.WriteAllText(Path.Combine(dir, "config.json"), doc.RootElement.GetProperty("config").GetRawText());
        WriteSafetensors(Path.Combine(dir, weightsName), weights);
        return dir;
    }

    public static void WriteSafetensors(string path, IReadOnlyDictionary<string, Tensor> weights)
    {
        using var stream = File.Create(path);
        Safetensors.SaveStateDict(stream, weights.ToDictionary(kv => kv.Key, kv => kv.Value));
    }

    /// <summary>
    /// A temporary <c>CLIPModel</c>-style folder: config.json with the tiny clip-eval text and vision configs as
    /// <c>text_config</c> / <c>vision_config</c> (after <paramref name="extraConfig"/>, e.g. <c>"projection_dim": 16, </c>),
    /// and model.safetensors holding the text tower's then the vision tower's weights.
    /// </summary>
    public static string CreateFullClip(string prefix, IReadOnlyDictionary<string, Tensor> textWeights, IReadOnlyDictionary<string, Tensor> visionWeights,
        IReadOnlyDictionary<string, Tensor>? extraWeights = null, string extraConfig = "")
    {
        var all = new Dictionary<string, Tensor>(textWeights);
        foreach (var kv in visionWeights) all[kv.Key] = kv.Value;
        if (extraWeights is not null) foreach (var kv in extraWeights) all[kv.Key] = kv.Value;
        string dir = Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
            using (var t = TestVectors.LoadJson("clip-eval", "clip_text_proj_tiny.json"))
            using (var v = TestVectors.LoadJson("clip-eval", "clip_vision_tiny.json"))
                File.WriteAllText(Path.Combine(dir, "config.json"),
                    $"{{{extraConfig}\"text_config\": {t.RootElement.GetProperty("config").GetRawText()}, \"vision_config\": {v.RootElement.GetProperty("config").GetRawText()}}}");
            WriteSafetensors(Path.Combine(dir, "model.safetensors"), all);
            return dir;
        }
        catch
        {
            Directory.Delete(dir, true);
            throw;
        }
    }
}
