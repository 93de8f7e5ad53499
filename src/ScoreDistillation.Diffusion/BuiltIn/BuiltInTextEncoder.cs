using System.Globalization;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// A deterministic text encoder for the built-in world. Each (role, word) pair — body colour, shape, "with", accent colour,
/// side — has a fixed random vector of unit expected norm drawn from a generator seeded by a stable hash of the seed and
/// the pair. A prompt's token sequence [L, D] is its role-bound words in grammar order padded with a pad vector; its
/// pooled vector [D] is the sum of the content vectors divided by √k (zeros for the unconditional prompt ""). Because
/// the pooled vector is linear in its parts, an amortized generator can generalise to colour–shape combinations it was
/// never trained on. The encoding is exactly invertible: <see cref="Decode"/> recovers the canonical prompt of every row.
/// </summary>
public sealed class BuiltInTextEncoder
{
    readonly string[] _keys;
    readonly Dictionary<string, int> _index;
    readonly float[] _table; // [V, D] row-major, CPU
    readonly Dictionary<(DeviceType, int, ScalarType), Tensor> _onDevice = new();
    readonly object _gate = new();

    /// <summary>Creates an encoder.</summary>
    /// <param name="width">Embedding width D (1024 matches SD 2.x / paper-size generators).</param>
    /// <param name="maxTokens">Token sequence length L (at least 5, the longest grammar).</param>
    /// <param name="seed">Seed of the word vectors.</param>
    public BuiltInTextEncoder(int width = 1024, int maxTokens = 8, long seed = 20240601)
    {
        if (width < 8) throw new ArgumentOutOfRangeException(nameof(width), width, "Embedding width must be at least 8.");
        if (maxTokens < 5) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "The token sequence must hold at least 5 tokens.");
        Width = width;
        MaxTokens = maxTokens;
        Seed = seed;
        var keys = new List<string> { PadKey, WithKey };
        keys.AddRange(WorldVocabulary.Colours.Select(c => "colour:" + c));
        keys.AddRange(WorldVocabulary.Shapes.Select(s => "shape:" + s));
        keys.AddRange(WorldVocabulary.Colours.Select(c => "accent:" + c));
        keys.AddRange(WorldVocabulary.Sides.Select(s => "side:" + s));
        _keys = keys.ToArray();
        _index = _keys.Select((k, i) => (k, i)).ToDictionary(p => p.k, p => p.i, StringComparer.Ordinal);
        _table = new float[_keys.Length * width];
        for (int i = 0; i < _keys.Length; i++)
        {
            using var g = new Generator(StableHash(seed, _keys[i]));
            using var v = randn(new long[] { width }, ScalarType.Float32, CPU, generator: g) / Math.Sqrt(width);
            v.data<float>().CopyTo(_table.AsSpan(i * width, width));
        }
    }

    const string PadKey = "<pad>";
    const string WithKey = "with";

    /// <summary>Embedding width D.</summary>
    public int Width { get; }

    /// <summary>Token sequence length L.</summary>
    public int MaxTokens { get; }

    /// <summary>Seed of the word vectors.</summary>
    public long Seed { get; }

    /// <summary>A stable identifier of the encoding.</summary>
    public string Id => string.Create(CultureInfo.InvariantCulture, $"builtin-text(D={Width},L={MaxTokens},seed={Seed})");

    /// <summary>The canonical form of a prompt ("" stays ""); throws with the vocabulary for unknown words.</summary>
    public static string Canonical(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return WorldObject.Words(prompt).Count == 0 ? "" : WorldObject.Parse(prompt).Prompt;
    }

    /// <summary>Encodes prompts ("" is unconditional) on <paramref name="device"/> in float32.</summary>
    /// <exception cref="ArgumentException">A prompt has an unknown word; the message lists the vocabulary.</exception>
    public TextConditioning Encode(IReadOnlyList<string> prompts, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        device ??= CPU;
        int b = prompts.Count, l = MaxTokens, d = Width;
        var tokens = new float[b * l * d];
        var pooled = new float[b * d];
        var canonical = new string[b];
        for (int row = 0; row < b; row++)
        {
            canonical[row] = Canonical(prompts[row]);
            var keys = TokenKeys(canonical[row]);
            for (int j = 0; j < l; j++)
            {
                int v = _index[j < keys.Count ? keys[j] : PadKey];
                _table.AsSpan(v * d, d).CopyTo(tokens.AsSpan((row * l + j) * d, d));
            }
            var content = keys.Where(k => k != WithKey).ToList();
            if (content.Count == 0) continue;
            float norm = 1f / MathF.Sqrt(content.Count);
            var dst = pooled.AsSpan(row * d, d);
            foreach (var k in content)
            {
                var src = _table.AsSpan(_index[k] * d, d);
                for (int i = 0; i < d; i++) dst[i] += src[i] * norm;
            }
        }
        var tokensT = tensor(tokens, new long[] { b, l, d }, ScalarType.Float32).to(device);
        var pooledT = tensor(pooled, new long[] { b, d }, ScalarType.Float32).to(device);
        return new TextConditioning(canonical, tokensT, pooledT);
    }

    /// <summary>
    /// Recovers the canonical prompt of each row of token embeddings [N, L, D] produced by <see cref="Encode"/>
    /// (one small matrix product against the word table and one host copy of N·L indices).
    /// </summary>
    /// <exception cref="ArgumentException">The shape is wrong, or a row is not an encoding of this encoder.</exception>
    public string[] Decode(Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.dim() != 3 || tokens.shape[1] != MaxTokens || tokens.shape[2] != Width)
            throw new ArgumentException($"Text tokens must be [N, {MaxTokens}, {Width}] for {Id}, got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        using var scope = NewDisposeScope();
        int n = (int)tokens.shape[0];
        var table = Table(tokens.device);
        var flat = tokens.detach().to(ScalarType.Float32).reshape(-1, Width);
        // ‖t − v‖² = ‖t‖² − 2 t·v + ‖v‖²; the nearest entry must be (numerically) exact.
        var d2 = (flat.square().sum(1, keepdim: true) - 2 * flat.matmul(table.t()) + table.square().sum(1).unsqueeze(0)).clamp_min(0);
        var (best, idx) = d2.min(1);
        var bestHost = best.cpu().data<float>().ToArray();
        var idxHost = idx.cpu().data<long>().ToArray();
        var result = new string[n];
        for (int row = 0; row < n; row++)
        {
            var keys = new List<string>();
            for (int j = 0; j < MaxTokens; j++)
            {
                int k = row * MaxTokens + j;
                if (bestHost[k] > 1e-3f)
                    throw new ArgumentException($"Text row {row}, token {j} is not an embedding of {Id} (squared distance {bestHost[k]:G3} to the nearest word). " +
                        "Encode prompts with this prior's EncodeText.", nameof(tokens));
                keys.Add(_keys[idxHost[k]]);
            }
            result[row] = PromptFromKeys(keys, row);
        }
        return result;
    }

    static List<string> TokenKeys(string canonical)
    {
        if (canonical.Length == 0) return new List<string>();
        var o = WorldObject.Parse(canonical);
        var keys = new List<string> { "colour:" + o.Colour, "shape:" + o.Shape.ToString().ToLowerInvariant() };
        if (o.AccentColour is not null)
        {
            keys.Add(WithKey);
            keys.Add("accent:" + o.AccentColour);
            keys.Add("side:" + o.Side.ToString().ToLowerInvariant());
        }
        return keys;
    }

    static string PromptFromKeys(List<string> keys, int row)
    {
        var content = keys.TakeWhile(k => k != PadKey).ToList();
        if (keys.Skip(content.Count).Any(k => k != PadKey))
            throw new ArgumentException($"Text row {row} has words after padding; it is not an encoding of the built-in encoder.");
        if (content.Count == 0) return "";
        string Value(int i, string role) => content.Count > i && content[i].StartsWith(role + ":", StringComparison.Ordinal)
            ? content[i][(role.Length + 1)..]
            : throw new ArgumentException($"Text row {row} has token '{(content.Count > i ? content[i] : "<none>")}' where a {role} was expected.");
        string colour = Value(0, "colour"), shape = Value(1, "shape");
        if (content.Count == 2) return new WorldObject(Enum.Parse<WorldShape>(shape, true), colour).Prompt;
        if (content.Count != 5 || content[2] != WithKey)
            throw new ArgumentException($"Text row {row} has {content.Count} content tokens; the built-in grammar has 2 or 5.");
        return new WorldObject(Enum.Parse<WorldShape>(shape, true), colour, Value(3, "accent"), Enum.Parse<AccentSide>(Value(4, "side"), true)).Prompt;
    }

    Tensor Table(Device device)
    {
        var key = (device.type, device.index, ScalarType.Float32);
        lock (_gate)
        {
            if (!_onDevice.TryGetValue(key, out var t))
            {
                using var cpu = tensor(_table, new long[] { _keys.Length, Width }, ScalarType.Float32);
                t = cpu.to(device).DetachFromDisposeScope();
                _onDevice[key] = t;
            }
            return t;
        }
    }

    /// <summary>FNV-1a 64 of the seed and a key: stable across processes and platforms (unlike string.GetHashCode).</summary>
    internal static ulong StableHash(long seed, string key)
    {
        ulong h = 14695981039346656037UL;
        void Mix(byte b) { h ^= b; h *= 1099511628211UL; }
        foreach (byte b in BitConverter.GetBytes(seed)) Mix(b);
        foreach (char c in key) { Mix((byte)c); Mix((byte)(c >> 8)); }
        return h;
    }
}
