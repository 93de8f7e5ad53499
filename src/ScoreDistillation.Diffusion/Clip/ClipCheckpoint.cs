using System.Collections;
using System.Text.Json;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Clip;

/// <summary>
/// Strict loading of a Hugging Face model folder's weights (<c>model.safetensors</c>, sharded safetensors with an index,
/// <c>pytorch_model.bin</c> or its sharded form) into a module whose field names equal the transformers keys.
/// </summary>
internal static class ClipCheckpoint
{
    static readonly string[] Candidates =
    [
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
        "model.fp16.safetensors", "pytorch_model.fp16.bin",
    ];

    /// <summary>Finds the weight file of a folder, or throws naming every path tried.</summary>
    public static string FindWeights(string directory)
    {
        foreach (var name in Candidates)
        {
            string p = Path.Combine(directory, name);
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException(
            $"No weights found in {directory}; looked for {string.Join(", ", Candidates.Select(c => Path.Combine(directory, c)))}.");
    }

    /// <summary>Reads every tensor of a weight file (or of all shards of an index) onto the CPU.</summary>
    public static Dictionary<string, Tensor> ReadStateDict(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Weight file not found: {path}", path);
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map))
                throw new InvalidDataException($"{path}: index has no 'weight_map'.");
            var shards = map.EnumerateObject().Select(p => p.Value.GetString()!).Distinct().ToList();
            var all = new Dictionary<string, Tensor>();
            foreach (var shard in shards)
                foreach (var kv in ReadStateDict(Path.Combine(Path.GetDirectoryName(path)!, shard)))
                    all[kv.Key] = kv.Value;
            return all;
        }
        try
        {
            if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                var d = Safetensors.LoadStateDict(path);
                foreach (var t in d.Values) t.DetachFromDisposeScope();
                return d;
            }
            var table = PyTorchUnpickler.UnpickleStateDict(path);
            var result = new Dictionary<string, Tensor>();
            foreach (DictionaryEntry e in table)
                if (e.Value is Tensor t) result[(string)e.Key] = t.DetachFromDisposeScope();
            return result;
        }
        // PyBridge reports truncated files, legacy pickles and unknown dtypes with assorted exception types.
        catch (Exception ex) when (ex is not (OutOfMemoryException or FileNotFoundException or InvalidDataException))
        {
            throw new InvalidDataException($"Cannot read weights from {path}: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// The <c>FromPretrained</c> steps shared by the CLIP towers: finds and reads the weights of <paramref name="directory"/>,
    /// loads them strictly into the module <paramref name="create"/> builds (skipping keys <paramref name="ignore"/> accepts)
    /// and returns it in eval mode. The module is disposed if loading fails; the read tensors are always disposed.
    /// </summary>
    public static T LoadPretrained<T>(string directory, Func<T> create, Func<string, bool> ignore) where T : nn.Module
    {
        string file = FindWeights(directory);
        var model = create();
        try
        {
            var weights = ReadStateDict(file);
            try
            {
                Load(model, weights, ignore, file);
            }
            finally
            {
                foreach (var t in weights.Values) t.Dispose();
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// <summary>
    /// Keys a single tower skips in a full <c>CLIPModel</c> checkpoint: the <c>position_ids</c> buffers, <c>logit_scale</c>
    /// and the other tower and its projection (named by their key prefixes).
    /// </summary>
    public static bool IgnoredByTower(string key, string otherTowerPrefix, string otherProjectionPrefix) =>
        key.EndsWith("position_ids", StringComparison.Ordinal) || key == "logit_scale" ||
        key.StartsWith(otherTowerPrefix, StringComparison.Ordinal) || key.StartsWith(otherProjectionPrefix, StringComparison.Ordinal);

    /// <summary>
    /// Copies <paramref name="weights"/> into <paramref name="module"/> under no-grad. Keys for which <paramref name="ignore"/>
    /// returns true are skipped. Any missing key, unexpected key or shape mismatch throws, naming them all.
    /// </summary>
    public static void Load(nn.Module module, IReadOnlyDictionary<string, Tensor> weights, Func<string, bool> ignore, string source)
    {
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !weights.ContainsKey(k)).ToList();
        var unexpected = weights.Keys.Where(k => !target.ContainsKey(k) && !ignore(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var badShape = target.Where(kv => weights.TryGetValue(kv.Key, out var w) && !w.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key}: checkpoint [{string.Join(", ", weights[kv.Key].shape)}] vs model [{string.Join(", ", kv.Value.shape)}]")
            .ToList();
        var badType = weights.Where(kv => target.ContainsKey(kv.Key) && !is_floating_point(kv.Value) && is_floating_point(target[kv.Key]))
            .Select(kv => $"{kv.Key}: {kv.Value.dtype}").ToList();
        if (missing.Count + unexpected.Count + badShape.Count + badType.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing keys ({missing.Count}): {string.Join(", ", missing.Take(20))}{(missing.Count > 20 ? ", ..." : "")}");
            if (unexpected.Count > 0) parts.Add($"unexpected keys ({unexpected.Count}): {string.Join(", ", unexpected.Take(20))}{(unexpected.Count > 20 ? ", ..." : "")}");
            if (badShape.Count > 0) parts.Add($"shape mismatches ({badShape.Count}): {string.Join("; ", badShape.Take(20))}");
            if (badType.Count > 0) parts.Add($"non-floating-point weights: {string.Join("; ", badType.Take(20))}");
            throw new InvalidDataException($"Weights in {source} do not fit {module.GetName()}: {string.Join(" | ", parts)}.");
        }
        using (no_grad())
        {
            foreach (var (key, dst) in target)
                dst.copy_(weights[key]);
        }
    }
}

/// <summary>The shared bodies of <see cref="ClipTextOutput"/> and <see cref="ClipVisionOutput"/>'s scope handling.</summary>
internal static class ClipOutputTensors
{
    /// <summary>Moves every non-null tensor of <paramref name="single"/> and all of <paramref name="hidden"/> to the enclosing scope.</summary>
    public static void MoveToOuterDisposeScope(ReadOnlySpan<Tensor?> single, IReadOnlyList<Tensor> hidden)
    {
        foreach (var t in single) t?.MoveToOuterDisposeScope();
        foreach (var h in hidden) h.MoveToOuterDisposeScope();
    }

    /// <summary>Disposes every non-null tensor of <paramref name="single"/> and all of <paramref name="hidden"/>.</summary>
    public static void Dispose(ReadOnlySpan<Tensor?> single, IReadOnlyList<Tensor> hidden)
    {
        foreach (var t in single) t?.Dispose();
        foreach (var h in hidden) h.Dispose();
    }
}
