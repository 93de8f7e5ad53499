using System.Collections;
using System.Text.Json;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Loading;

/// <summary>What a checkpoint load did.</summary>
/// <param name="Files">Weight files read, in order.</param>
/// <param name="LoadedKeys">Model weights that were filled.</param>
/// <param name="MissingKeys">Model weights left as they were (only possible when not strict).</param>
/// <param name="UnexpectedKeys">Checkpoint weights ignored (only possible when not strict).</param>
public sealed record CheckpointLoadReport(IReadOnlyList<string> Files, IReadOnlyList<string> LoadedKeys, IReadOnlyList<string> MissingKeys, IReadOnlyList<string> UnexpectedKeys);

/// <summary>
/// Loads PyTorch checkpoints into TorchSharp modules whose parameter names equal the checkpoint keys: safetensors
/// (F32/F16/BF16/…, converted to the module's dtype), sharded safetensors or <c>.bin</c> with a <c>*.index.json</c>,
/// and PyTorch zip <c>.bin</c>/<c>.pt</c> files. Strict by default; every error names files, keys and shapes.
/// </summary>
public static class CheckpointLoader
{
    /// <summary>The diffusers weight file base name.</summary>
    public const string DiffusersWeightsName = "diffusion_pytorch_model";

    /// <summary>
    /// The weight file of a diffusers component folder: <c>{name}[.{variant}].safetensors</c>, its sharded index, then
    /// <c>.bin</c> and its index.
    /// </summary>
    /// <exception cref="FileNotFoundException">None exists; the message lists every path looked for.</exception>
    public static string ResolveWeights(string folder, string weightsName = DiffusersWeightsName, string? variant = null)
    {
        string stem = variant is null ? weightsName : $"{weightsName}.{variant}";
        var candidates = new[] { $"{stem}.safetensors", $"{stem}.safetensors.index.json", $"{stem}.bin", $"{stem}.bin.index.json" }
            .Select(c => Path.Combine(folder, c)).ToArray();
        foreach (var c in candidates)
            if (File.Exists(c)) return c;
        throw new FileNotFoundException($"No weight file found; looked for: {string.Join(", ", candidates)}.", candidates[0]);
    }

    /// <summary>
    /// Builds a module, loads a diffusers component folder into it strictly, puts it in eval mode and converts it to
    /// <paramref name="dtype"/>/<paramref name="device"/>; the module is disposed if anything fails.
    /// </summary>
    public static T LoadPretrained<T>(Func<T> build, string folder, ScalarType? dtype, Device? device, string? variant) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(build);
        var model = build();
        try
        {
            LoadFromFolder(model, folder, variant: variant);
            model.eval();
            if (dtype is ScalarType dt) model.to(dt);
            if (device is not null) model.to(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads the weights of a diffusers component folder (see <see cref="ResolveWeights"/>) into <paramref name="module"/>.</summary>
    public static CheckpointLoadReport LoadFromFolder(nn.Module module, string folder, string weightsName = DiffusersWeightsName, string? variant = null, bool strict = true) =>
        Load(module, ResolveWeights(folder, weightsName, variant), strict);

    /// <summary>
    /// Loads a checkpoint file (<c>.safetensors</c>, <c>.bin</c>/<c>.pt</c>/<c>.pth</c>, or a <c>*.index.json</c> of shards) into <paramref name="module"/>.
    /// Wrongly shaped weights are always an error; missing and unexpected keys are errors when <paramref name="strict"/>.
    /// Nothing is copied unless the whole checkpoint fits.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file or a shard does not exist (the message names the path).</exception>
    /// <exception cref="CheckpointException">Key/shape mismatch, truncated/corrupt file or unsupported dtype.</exception>
    /// <param name="module">The module to fill.</param>
    /// <param name="path">Checkpoint file or shard index.</param>
    /// <param name="strict">Missing and unexpected keys are errors.</param>
    /// <param name="mapKey">
    /// Optional renaming of checkpoint keys to module keys (e.g. stripping LDM's <c>model.diffusion_model.</c> prefix);
    /// returning null skips a key silently.
    /// </param>
    public static CheckpointLoadReport Load(nn.Module module, string path, bool strict = true, Func<string, string?>? mapKey = null)
    {
        Func<string, string?> map = mapKey ?? (k => k);
        ArgumentNullException.ThrowIfNull(module);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Checkpoint file not found: {path}", path);

        var files = path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? ReadIndex(path) : new List<string> { path };
        var sources = files.Select(OpenSource).ToList();
        try
        {
            var target = module.state_dict();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var unexpected = new List<string>();
            var wrongShape = new List<string>();
            foreach (var src in sources)
                foreach (var (fileKey, shape, _) in src.Entries())
                {
                    if (map(fileKey) is not string key || !seen.Add(key)) continue;
                    if (!target.TryGetValue(key, out var t)) { unexpected.Add(key); continue; }
                    if (!t.shape.SequenceEqual(shape))
                        wrongShape.Add($"{key}: expected [{string.Join(", ", t.shape)}], found [{string.Join(", ", shape)}] in '{src.Path}'");
                }
            var missing = target.Keys.Where(k => !seen.Contains(k)).ToList();
            if (wrongShape.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
                throw Mismatch(path, missing, unexpected, wrongShape);

            var loaded = new List<string>();
            using (no_grad())
            {
                foreach (var src in sources)
                    src.CopyInto(target, loaded, map);
            }
            return new CheckpointLoadReport(files, loaded, missing, unexpected);
        }
        finally
        {
            foreach (var s in sources) s.Dispose();
        }
    }

    /// <summary>Reads every tensor of a checkpoint (any supported format) into CPU tensors in their stored dtype. The caller disposes them.</summary>
    public static Dictionary<string, Tensor> ReadStateDict(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Checkpoint file not found: {path}", path);
        var files = path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? ReadIndex(path) : new List<string> { path };
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var f in files)
        {
            using var src = OpenSource(f);
            src.ReadAll(result);
        }
        return result;
    }

    static CheckpointException Mismatch(string path, List<string> missing, List<string> unexpected, List<string> wrongShape)
    {
        static string List(string title, List<string> items) =>
            items.Count == 0 ? "" : $"\n  {title} ({items.Count}): {string.Join(", ", items.Take(20))}{(items.Count > 20 ? ", …" : "")}";
        string msg = $"Checkpoint '{path}' does not match the model." + List("wrongly shaped", wrongShape) + List("missing keys", missing) + List("unexpected keys", unexpected);
        return new CheckpointException(msg, path, missing, unexpected, wrongShape);
    }

    static List<string> ReadIndex(string indexPath)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"Shard index '{indexPath}' has no 'weight_map' object.");
            var shards = new List<string>();
            foreach (var p in map.EnumerateObject())
            {
                string shard = Path.Combine(dir, p.Value.GetString() ?? throw new CheckpointException($"Shard index '{indexPath}': key '{p.Name}' has no file name."));
                if (!shards.Contains(shard)) shards.Add(shard);
            }
            foreach (var s in shards)
                if (!File.Exists(s)) throw new FileNotFoundException($"Shard listed in '{indexPath}' not found: {s}", s);
            return shards;
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"Shard index '{indexPath}' is not valid JSON ({e.Message}).", e);
        }
    }

    static ISource OpenSource(string path) =>
        path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? new SafetensorsSource(path) : new PickleSource(path);

    interface ISource : IDisposable
    {
        string Path { get; }
        IEnumerable<(string Key, long[] Shape, ScalarType DType)> Entries();
        void CopyInto(Dictionary<string, Tensor> target, List<string> loaded, Func<string, string?> map);
        void ReadAll(Dictionary<string, Tensor> into);
    }

    sealed class SafetensorsSource : ISource
    {
        readonly SafetensorsFile _file;
        public SafetensorsSource(string path) => _file = SafetensorsFile.Open(path);
        public string Path => _file.Path;
        public IEnumerable<(string, long[], ScalarType)> Entries() => _file.Entries.Select(e => (e.Key, e.Value.Shape, e.Value.ScalarType));

        public void CopyInto(Dictionary<string, Tensor> target, List<string> loaded, Func<string, string?> map)
        {
            using var stream = File.OpenRead(_file.Path);
            foreach (var (fileKey, entry) in _file.Entries.OrderBy(e => e.Value.Begin))
            {
                if (map(fileKey) is not string key || !target.TryGetValue(key, out var t) || loaded.Contains(key)) continue;
                using var src = _file.Read(stream, fileKey);
                t.copy_(src);
                loaded.Add(key);
            }
        }

        public void ReadAll(Dictionary<string, Tensor> into)
        {
            using var stream = File.OpenRead(_file.Path);
            foreach (var key in _file.Entries.Keys)
                into[key] = _file.Read(stream, key);
        }

        public void Dispose() { }
    }

    sealed class PickleSource : ISource
    {
        readonly Dictionary<string, Tensor> _tensors = new(StringComparer.Ordinal);
        public string Path { get; }

        public PickleSource(string path)
        {
            Path = path;
            if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint file not found: {path}", path);
            Hashtable table;
            try
            {
                table = PyTorchUnpickler.UnpickleStateDict(path);
            }
            catch (Exception e) when (e is not FileNotFoundException)
            {
                throw new CheckpointException($"Cannot read PyTorch checkpoint '{path}' (expected a zip-format torch.save of a flat state_dict): {e.Message}", e);
            }
            foreach (DictionaryEntry kv in table)
            {
                if (kv.Value is not Tensor t)
                    throw new CheckpointException($"PyTorch checkpoint '{path}': entry '{kv.Key}' is not a tensor (expected a flat state_dict).");
                _tensors[(string)kv.Key] = t.DetachFromDisposeScope();
            }
        }

        public IEnumerable<(string, long[], ScalarType)> Entries() => _tensors.Select(kv => (kv.Key, kv.Value.shape, kv.Value.dtype));

        public void CopyInto(Dictionary<string, Tensor> target, List<string> loaded, Func<string, string?> map)
        {
            foreach (var (fileKey, src) in _tensors)
            {
                if (map(fileKey) is not string key || !target.TryGetValue(key, out var t) || loaded.Contains(key)) continue;
                t.copy_(src);
                loaded.Add(key);
            }
        }

        public void ReadAll(Dictionary<string, Tensor> into)
        {
            foreach (var (key, src) in _tensors) into[key] = src.clone().DetachFromDisposeScope();
        }

        public void Dispose()
        {
            foreach (var t in _tensors.Values) t.Dispose();
            _tensors.Clear();
        }
    }
}
