using System.Text.Json;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Infrastructure;

/// <summary>Loads the project's test vectors from TestData (copied next to the test assembly; never from the read-only reference folder outside the repository).</summary>
public static class TestVectors
{
    /// <summary>Folder holding the test data in the output directory.</summary>
    public static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");

    /// <summary>Absolute path of a test data file, failing clearly when it is missing.</summary>
    public static string PathOf(params string[] parts)
    {
        string p = Path.Combine(new[] { Root }.Concat(parts).ToArray());
        if (!File.Exists(p) && !Directory.Exists(p)) throw new FileNotFoundException($"Test vector not found: {p}", p);
        return p;
    }

    /// <summary>All tensors of a safetensors file, on the CPU. The caller disposes them.</summary>
    public static Dictionary<string, Tensor> LoadSafetensors(params string[] parts)
    {
        var dict = Safetensors.LoadStateDict(PathOf(parts));
        foreach (var t in dict.Values) t.DetachFromDisposeScope();
        return dict;
    }

    /// <summary>A parsed JSON document.</summary>
    public static JsonDocument LoadJson(params string[] parts) => JsonDocument.Parse(File.ReadAllText(PathOf(parts)));
}
