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

    public static void Dispose(IEnumerable<Tensor> tensors)
    {
        foreach (var t in tensors) t.Dispose();
    }
}
