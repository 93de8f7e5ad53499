using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Training;

/// <summary>
/// A training checkpoint: the step, a configuration fingerprint, and named sections of tensors (generator and background
/// state, optimizer state, distiller state such as VSD's particle model and its optimizer, RNG states). Written
/// atomically (temporary file, fsync, rename) with a SHA-256 over the payload, so a truncated or corrupted file is
/// refused on load. Owns its tensors.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    static readonly byte[] Magic = "SDCKPT01"u8.ToArray();
    readonly Dictionary<string, Dictionary<string, Tensor>> _sections = new(StringComparer.Ordinal);

    /// <summary>Creates an empty checkpoint.</summary>
    /// <param name="step">Number of completed optimizer steps.</param>
    /// <param name="configuration">Settings that must match for a resume (name → value).</param>
    public Checkpoint(long step, IReadOnlyDictionary<string, string> configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        Step = step;
        Configuration = new SortedDictionary<string, string>(configuration.ToDictionary(kv => kv.Key, kv => kv.Value), StringComparer.Ordinal);
    }

    /// <summary>Completed optimizer steps.</summary>
    public long Step { get; }

    /// <summary>The configuration fingerprint.</summary>
    public IReadOnlyDictionary<string, string> Configuration { get; }

    /// <summary>Extra host values (metrics, prompt lists) carried along; not part of the fingerprint.</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    /// <summary>Section names.</summary>
    public IReadOnlyCollection<string> SectionNames => _sections.Keys;

    /// <summary>Adds a section; the tensors are copied to the CPU (the checkpoint owns the copies).</summary>
    public void Add(string section, IEnumerable<(string Name, Tensor Value)> tensors)
    {
        ArgumentException.ThrowIfNullOrEmpty(section);
        ArgumentNullException.ThrowIfNull(tensors);
        var dict = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, value) in tensors)
            dict[name] = value.detach().cpu().clone().DetachFromDisposeScope();
        if (_sections.Remove(section, out var old)) foreach (var t in old.Values) t.Dispose();
        _sections[section] = dict;
    }

    /// <summary>Adds a module's state_dict as a section.</summary>
    public void AddModule(string section, nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        Add(section, module.state_dict().Select(kv => (kv.Key, kv.Value)));
    }

    /// <summary>Adds the state of a torch generator as section <paramref name="section"/>.</summary>
    public void AddRng(string section, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        using var state = generator.get_state();
        Add(section, new[] { ("state", state) });
    }

    /// <summary>True when the section exists.</summary>
    public bool Has(string section) => _sections.ContainsKey(section);

    /// <summary>The tensors of a section (owned by the checkpoint).</summary>
    public IReadOnlyDictionary<string, Tensor> Section(string section) =>
        _sections.TryGetValue(section, out var d) ? d
        : throw new KeyNotFoundException($"The checkpoint has no section '{section}'. Sections: {string.Join(", ", _sections.Keys)}.");

    /// <summary>Copies a module section into <paramref name="module"/>; key sets and shapes must match exactly.</summary>
    public void LoadModule(string section, nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var saved = Section(section);
        var target = module.state_dict();
        var missing = target.Keys.Except(saved.Keys).ToArray();
        var extra = saved.Keys.Except(target.Keys).ToArray();
        if (missing.Length > 0 || extra.Length > 0)
            throw new InvalidDataException($"Checkpoint section '{section}' does not fit the module: missing [{string.Join(", ", missing.Take(5))}], unexpected [{string.Join(", ", extra.Take(5))}].");
        using var noGrad = no_grad();
        foreach (var (key, t) in target)
        {
            var s = saved[key];
            if (!s.shape.SequenceEqual(t.shape))
                throw new InvalidDataException($"Checkpoint section '{section}' key '{key}' has shape [{string.Join(", ", s.shape)}], the module has [{string.Join(", ", t.shape)}].");
            t.copy_(s);
        }
    }

    /// <summary>Restores a torch generator from a section written by <see cref="AddRng"/>.</summary>
    public void LoadRng(string section, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        generator.set_state(Section(section)["state"]);
    }

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> naming every setting that differs between this checkpoint and
    /// <paramref name="expected"/>.
    /// </summary>
    public void EnsureCompatible(IReadOnlyDictionary<string, string> expected, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(expected);
        var diffs = new List<string>();
        foreach (var key in Configuration.Keys.Union(expected.Keys).OrderBy(k => k, StringComparer.Ordinal))
        {
            bool a = Configuration.TryGetValue(key, out var mine), b = expected.TryGetValue(key, out var theirs);
            if (a && b && mine == theirs) continue;
            diffs.Add($"{key}: checkpoint has {(a ? $"'{mine}'" : "nothing")}, this run has {(b ? $"'{theirs}'" : "nothing")}");
        }
        if (diffs.Count > 0)
            throw new InvalidOperationException($"Checkpoint {(source is null ? "" : $"'{source}' ")}was written by a different configuration; refusing to resume. Differences: {string.Join("; ", diffs)}.");
    }

    /// <summary>Writes the checkpoint atomically: readers see the previous file or the complete new one, never a mixture.</summary>
    public void Save(string path)
    {
        byte[] payload;
        using (var ms = new MemoryStream())
        {
            using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(Step);
                w.Write(JsonSerializer.Serialize(Configuration));
                w.Write(JsonSerializer.Serialize(Metadata));
                w.Write(_sections.Count);
                foreach (var (name, dict) in _sections.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.Write(name);
                    TensorIO.WriteDict(w, dict.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ToList());
                }
            }
            payload = ms.ToArray();
        }
        var hash = SHA256.HashData(payload);
        AtomicFile.Write(path, s =>
        {
            s.Write(Magic);
            s.Write(BitConverter.GetBytes((long)payload.Length));
            s.Write(payload);
            s.Write(hash);
        });
    }

    /// <summary>Reads a checkpoint, verifying its length and checksum.</summary>
    /// <exception cref="InvalidDataException">The file is not a checkpoint, is truncated, or its checksum does not match.</exception>
    public static Checkpoint Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < Magic.Length + 8 + 32 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new InvalidDataException($"'{path}' is not a ScoreDistillation checkpoint (bad header or {bytes.Length} bytes only).");
        long len = BitConverter.ToInt64(bytes, Magic.Length);
        long expected = Magic.Length + 8 + len + 32;
        if (len < 0 || expected != bytes.Length)
            throw new InvalidDataException($"Checkpoint '{path}' is truncated or has trailing data: {bytes.Length} bytes, the header announces {expected}.");
        var payload = bytes.AsSpan(Magic.Length + 8, (int)len);
        var hash = SHA256.HashData(payload);
        if (!hash.AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
            throw new InvalidDataException($"Checkpoint '{path}' is corrupted: its SHA-256 checksum does not match its content.");
        using var ms = new MemoryStream(payload.ToArray());
        using var r = new BinaryReader(ms, Encoding.UTF8);
        long step = r.ReadInt64();
        var config = JsonSerializer.Deserialize<Dictionary<string, string>>(r.ReadString())
            ?? throw new InvalidDataException($"Checkpoint '{path}' has no configuration.");
        var meta = JsonSerializer.Deserialize<Dictionary<string, string>>(r.ReadString()) ?? new();
        var ck = new Checkpoint(step, config);
        foreach (var kv in meta) ck.Metadata[kv.Key] = kv.Value;
        int n = r.ReadInt32();
        for (int i = 0; i < n; i++)
        {
            var name = r.ReadString();
            var dict = TensorIO.ReadDict(r, $"checkpoint '{path}' section '{name}'");
            foreach (var t in dict.Values) t.DetachFromDisposeScope();
            ck._sections[name] = dict;
        }
        return ck;
    }

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var d in _sections.Values)
            foreach (var t in d.Values) t.Dispose();
        _sections.Clear();
    }
}

/// <summary>
/// A folder of numbered checkpoints (<c>step-00001000.sdckpt</c>), keeping the newest few. Loading the latest refuses
/// damaged files and falls back to the previous good one.
/// </summary>
public sealed class CheckpointStore
{
    /// <summary>Creates a store.</summary>
    /// <param name="directory">Folder of the checkpoints.</param>
    /// <param name="keep">How many of the newest checkpoints to keep (≥ 1).</param>
    public CheckpointStore(string directory, int keep = 2)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (keep < 1) throw new ArgumentOutOfRangeException(nameof(keep));
        Directory = directory;
        Keep = keep;
    }

    /// <summary>The folder.</summary>
    public string Directory { get; }

    /// <summary>How many checkpoints are kept.</summary>
    public int Keep { get; }

    /// <summary>The file name for a step.</summary>
    public string PathFor(long step) => Path.Combine(Directory, $"step-{step:D8}.sdckpt");

    /// <summary>Existing checkpoint files, newest first.</summary>
    public IReadOnlyList<string> List() => System.IO.Directory.Exists(Directory)
        ? System.IO.Directory.GetFiles(Directory, "step-*.sdckpt").OrderByDescending(f => f, StringComparer.Ordinal).ToArray()
        : Array.Empty<string>();

    /// <summary>Saves a checkpoint and deletes the oldest beyond <see cref="Keep"/>. Returns its path.</summary>
    public string Save(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var path = PathFor(checkpoint.Step);
        checkpoint.Save(path);
        foreach (var old in List().Skip(Keep)) File.Delete(old);
        return path;
    }

    /// <summary>
    /// Loads the newest checkpoint that passes its checksum; damaged ones are skipped (their paths and reasons are
    /// returned in <paramref name="rejected"/>). Null when none is usable.
    /// </summary>
    public Checkpoint? LoadLatest(out IReadOnlyList<string> rejected)
    {
        var bad = new List<string>();
        rejected = bad;
        foreach (var f in List())
        {
            try { return Checkpoint.Load(f); }
            catch (InvalidDataException e) { bad.Add(e.Message); }
            catch (EndOfStreamException e) { bad.Add($"{f}: {e.Message}"); }
        }
        return null;
    }
}
