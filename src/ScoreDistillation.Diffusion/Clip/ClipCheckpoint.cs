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
