using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Clip;

/// <summary>Which upstream CLIP tokenizer's text handling to reproduce.</summary>
public enum ClipTokenizerFlavor
{
    /// <summary>
    /// transformers' slow <c>CLIPTokenizer</c> (what diffusers pipelines and the ScaleDreamer evaluation call): ftfy
    /// clean-up without <c>html.unescape</c>; the special-token strings, and a pad token that is not one of them, are split
    /// out of the raw text first, so SD 2.x folders (pad <c>"!"</c>) turn every <c>!</c> into id 0.
    /// </summary>
    HuggingFace,

    /// <summary>openai/CLIP <c>SimpleTokenizer</c>: ftfy, then <c>html.unescape</c> twice; zero padding.</summary>
    OpenAI,

    /// <summary>open_clip v2.7.0 <c>tokenize()</c> (SD 2.x LDM code, MVDream): as OpenAI, but its special strings are
    /// <c>&lt;start_of_text&gt;</c> / <c>&lt;end_of_text&gt;</c>; zero padding.</summary>
    OpenClip,
}

/// <summary>Options of <see cref="ClipTokenizer"/>. The static presets carry each model family's behaviour.</summary>
public sealed record ClipTokenizerOptions
{
    /// <summary>Text handling to reproduce. Default <see cref="ClipTokenizerFlavor.HuggingFace"/>.</summary>
    public ClipTokenizerFlavor Flavor { get; init; } = ClipTokenizerFlavor.HuggingFace;

    /// <summary>
    /// Pad token string for the <see cref="ClipTokenizerFlavor.HuggingFace"/> flavor (<c>"&lt;|endoftext|&gt;"</c> in SD 1.5
    /// folders, <c>"!"</c> in SD 2.x folders); <see langword="null"/> pads with the end token. The other flavors pad with 0.
    /// </summary>
    public string? PadToken { get; init; }

    /// <summary>Sequence length including the start and end tokens. Default 77.</summary>
    public int MaxLength { get; init; } = 77;

    /// <summary>Stable Diffusion 1.x: transformers tokenizer padded with the end token 49407.</summary>
    public static ClipTokenizerOptions StableDiffusion15 { get; } = new() { PadToken = ClipTokenizer.EndOfTextToken };

    /// <summary>Stable Diffusion 2.x diffusers folders: transformers tokenizer whose pad token is <c>"!"</c> (id 0).</summary>
    public static ClipTokenizerOptions StableDiffusion2 { get; } = new() { PadToken = "!" };

    /// <summary>open_clip v2.7.0 as SD 2.x LDM code and MVDream call it: zero padding.</summary>
    public static ClipTokenizerOptions OpenClip { get; } = new() { Flavor = ClipTokenizerFlavor.OpenClip };
}

/// <summary>
/// CLIP's byte-level BPE tokenizer (openai <c>bpe_simple_vocab_16e6</c>, 49,408 ids): ftfy-style clean-up, whitespace
/// collapsing, lower-casing, CLIP's pre-tokenisation regex (one digit per piece), <c>&lt;/w&gt;</c> on the last symbol of each
/// piece, start 49406 / end 49407, truncation to start + 75 ids + end and padding to <see cref="ClipTokenizerOptions.MaxLength"/>.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers has no CLIP pre-tokeniser, ftfy clean-up or <c>&lt;/w&gt;</c> handling, so this is a small own BPE
/// that reproduces the reference ids exactly. Instances are thread-safe.
/// </remarks>
public sealed partial class ClipTokenizer
{
    /// <summary>The start token string.</summary>
    public const string StartOfTextToken = "<|startoftext|>";

    /// <summary>The end token string.</summary>
    public const string EndOfTextToken = "<|endoftext|>";

    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<(string, string), int> _ranks;
    readonly Dictionary<string, string[]> _cache = new(StringComparer.Ordinal);
    readonly Lock _cacheLock = new();
    readonly string[] _specials;
    static readonly string[] ByteEncoder = BuildByteEncoder();

    /// <summary>Builds a tokenizer from a token → id vocabulary and the ordered BPE merges.</summary>
    /// <param name="vocab">Token → id (<c>vocab.json</c>).</param>
    /// <param name="merges">Merges in rank order, each a pair of symbols.</param>
    /// <param name="options">Family behaviour; <see langword="null"/> = <see cref="ClipTokenizerOptions.StableDiffusion15"/>.</param>
    public ClipTokenizer(IReadOnlyDictionary<string, int> vocab, IEnumerable<(string Left, string Right)> merges, ClipTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(merges);
        Options = options ?? ClipTokenizerOptions.StableDiffusion15;
        if (Options.MaxLength < 2) throw new ArgumentOutOfRangeException(nameof(options), $"MaxLength must be at least 2, got {Options.MaxLength}.");
        _vocab = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        _ranks = new Dictionary<(string, string), int>();
        int r = 0;
        foreach (var m in merges) _ranks.TryAdd((m.Left, m.Right), r++);
        StartId = Lookup(StartOfTextToken);
        EndId = Lookup(EndOfTextToken);
        if (Options.Flavor == ClipTokenizerFlavor.HuggingFace)
        {
            string pad = Options.PadToken ?? EndOfTextToken;
            PadId = Lookup(pad);
            _specials = new[] { StartOfTextToken, EndOfTextToken, pad }.Distinct(StringComparer.Ordinal).ToArray();
        }
        else
        {
            PadId = 0;
            _specials = [];
        }
    }

    /// <summary>The options in effect.</summary>
    public ClipTokenizerOptions Options { get; }

    /// <summary>Id of the start token (49406 in the CLIP vocabulary).</summary>
    public int StartId { get; }

    /// <summary>Id of the end token (49407 in the CLIP vocabulary).</summary>
    public int EndId { get; }

    /// <summary>Id used for padding.</summary>
    public int PadId { get; }

    /// <summary>Number of ids in the vocabulary.</summary>
    public int VocabularySize => _vocab.Count;

    /// <summary>
    /// Loads <c>vocab.json</c> and <c>merges.txt</c> from a Hugging Face tokenizer folder (for example a diffusers
    /// <c>tokenizer/</c> folder). Without <paramref name="options"/>, the pad token is read from
    /// <c>special_tokens_map.json</c> or <c>tokenizer_config.json</c> when present (SD 2.x folders say <c>"!"</c>), else the end token.
    /// </summary>
    public static ClipTokenizer FromPretrained(string directory, ClipTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Tokenizer folder not found: {directory}");
        string vocabPath = Path.Combine(directory, "vocab.json");
        string mergesPath = Path.Combine(directory, "merges.txt");
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"CLIP tokenizer vocabulary not found: {vocabPath}", vocabPath);
        if (!File.Exists(mergesPath)) throw new FileNotFoundException($"CLIP tokenizer merges not found: {mergesPath}", mergesPath);
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(vocabPath))
                    ?? throw new InvalidDataException($"Empty vocabulary: {vocabPath}");
        options ??= new ClipTokenizerOptions { PadToken = ReadPadToken(directory) ?? EndOfTextToken };
        return new ClipTokenizer(vocab, ReadMerges(mergesPath), options);
    }

    /// <summary>Reads a <c>merges.txt</c> (first line is a version header; CRLF or LF) as transformers does: at most 48,894 merges.</summary>
    public static IEnumerable<(string Left, string Right)> ReadMerges(string path)
    {
        var lines = File.ReadAllText(path).Trim().Split('\n');
        int count = Math.Min(lines.Length - 1, 49152 - 256 - 2);
        for (int i = 1; i <= count; i++)
        {
            var parts = lines[i].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2) throw new InvalidDataException($"{path}: line {i + 1} is not a merge pair: '{lines[i].Trim()}'");
            yield return (parts[0], parts[1]);
        }
    }

    static string? ReadPadToken(string directory)
    {
        foreach (var name in new[] { "special_tokens_map.json", "tokenizer_config.json" })
        {
            string p = Path.Combine(directory, name);
            if (!File.Exists(p)) continue;
            using var doc = JsonDocument.Parse(File.ReadAllText(p));
            if (!doc.RootElement.TryGetProperty("pad_token", out var pad)) continue;
            if (pad.ValueKind == JsonValueKind.String) return pad.GetString();
            if (pad.ValueKind == JsonValueKind.Object && pad.TryGetProperty("content", out var c)) return c.GetString();
        }
        return null;
    }

    /// <summary>BPE ids of a text without start/end tokens, padding or truncation (openai <c>SimpleTokenizer.encode</c>).</summary>
    public IReadOnlyList<int> EncodeIds(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (Options.Flavor != ClipTokenizerFlavor.HuggingFace)
        {
            EncodeSegment(text, ids);
            return ids;
        }
        // transformers splits the raw text on its added tokens before any clean-up.
        int start = 0;
        while (start < text.Length)
        {
            int best = -1;
            string? hit = null;
            foreach (var s in _specials)
            {
                int at = text.IndexOf(s, start, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best || (at == best && s.Length > hit!.Length))) { best = at; hit = s; }
            }
            if (best < 0) break;
            if (best > start) EncodeSegment(text[start..best], ids);
            ids.Add(_vocab[hit!]);
            start = best + hit!.Length;
        }
        if (start < text.Length) EncodeSegment(text[start..], ids);
        return ids;
    }

    /// <summary>BPE token strings of a text (byte-level symbols, <c>&lt;/w&gt;</c> marking word ends).</summary>
    public IReadOnlyList<string> Tokenize(string text)
    {
        var inverse = _vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        return EncodeIds(text).Select(i => inverse[i]).ToArray();
    }

    /// <summary>
    /// Ids of one text as a model input: start, the BPE ids, end, then padding to <see cref="ClipTokenizerOptions.MaxLength"/>.
    /// A longer text keeps its first MaxLength − 2 ids (the end token stays last) when <paramref name="truncate"/>; otherwise it throws
    /// (the ScaleDreamer evaluation calls the tokenizer without truncation and fails on such prompts).
    /// </summary>
    public long[] Encode(string text, bool truncate = true)
    {
        var bpe = EncodeIds(text);
        int room = Options.MaxLength - 2;
        if (bpe.Count > room && !truncate)
            throw new ArgumentException($"Prompt has {bpe.Count} BPE tokens, more than the {room} that fit in {Options.MaxLength} positions: '{text}'.", nameof(text));
        var row = new long[Options.MaxLength];
        Array.Fill(row, PadId);
        row[0] = StartId;
        int n = Math.Min(bpe.Count, room);
        for (int i = 0; i < n; i++) row[i + 1] = bpe[i];
        row[n + 1] = EndId;
        return row;
    }

    /// <summary>Model input ids for a batch of texts: an Int64 tensor [B, MaxLength] on <paramref name="device"/> (CPU if null).</summary>
    public Tensor EncodeBatch(IReadOnlyList<string> texts, Device? device = null, bool truncate = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var flat = new long[texts.Count * Options.MaxLength];
        for (int b = 0; b < texts.Count; b++) Encode(texts[b], truncate).CopyTo(flat, b * Options.MaxLength);
        var t = tensor(flat, new long[] { texts.Count, Options.MaxLength }, ScalarType.Int64);
        if (device is null || device.type == DeviceType.CPU) return t;
        using (t) return t.to(device);
    }

    int Lookup(string token) => _vocab.TryGetValue(token, out int id)
        ? id
        : throw new InvalidDataException($"Token '{token}' is not in the CLIP vocabulary ({_vocab.Count} entries).");

    void EncodeSegment(string text, List<int> ids)
    {
        text = ClipTextCleaner.FixText(text);
        if (Options.Flavor != ClipTokenizerFlavor.HuggingFace)
            text = ClipTextCleaner.HtmlUnescape(ClipTextCleaner.HtmlUnescape(text));
        text = Lower(Whitespace().Replace(text, " ").Trim());
        var regex = Options.Flavor == ClipTokenizerFlavor.OpenClip ? OpenClipPattern() : Pattern();
        foreach (Match m in regex.Matches(text))
        {
            string piece = m.Value;
            if (Options.Flavor == ClipTokenizerFlavor.OpenClip && piece is "<start_of_text>" or "<end_of_text>")
            {
                ids.Add(piece == "<start_of_text>" ? StartId : EndId);
                continue;
            }
            if (Options.Flavor == ClipTokenizerFlavor.OpenAI && piece is StartOfTextToken or EndOfTextToken)
            {
                ids.Add(piece == StartOfTextToken ? StartId : EndId);
                continue;
            }
            var sb = new StringBuilder();
            foreach (byte b in Encoding.UTF8.GetBytes(piece)) sb.Append(ByteEncoder[b]);
            foreach (var sym in Bpe(sb.ToString()))
                ids.Add(_vocab.TryGetValue(sym, out int id) ? id : EndId);
        }
    }

    static string Lower(string s)
    {
        // Python's str.lower() maps U+0130 to two characters; .NET's invariant mapping is one-to-one.
        string lower = s.ToLowerInvariant();
        return lower.Contains('\u0130', StringComparison.Ordinal) ? lower.Replace("\u0130", "i\u0307", StringComparison.Ordinal) : lower;
    }

    string[] Bpe(string token)
    {
        lock (_cacheLock)
            if (_cache.TryGetValue(token, out var cached)) return cached;
        var word = new List<string>(token.Length);
        for (int i = 0; i < token.Length - 1; i++) word.Add(token[i].ToString());
        word.Add(token[^1] + "</w>");
        while (word.Count > 1)
        {
            int bestRank = int.MaxValue;
            (string, string) best = default;
            for (int i = 0; i < word.Count - 1; i++)
                if (_ranks.TryGetValue((word[i], word[i + 1]), out int rank) && rank < bestRank) { bestRank = rank; best = (word[i], word[i + 1]); }
            if (bestRank == int.MaxValue) break;
            var merged = new List<string>(word.Count);
            for (int i = 0; i < word.Count;)
            {
                if (i < word.Count - 1 && word[i] == best.Item1 && word[i + 1] == best.Item2) { merged.Add(best.Item1 + best.Item2); i += 2; }
                else merged.Add(word[i++]);
            }
            word = merged;
        }
        var result = word.ToArray();
        lock (_cacheLock)
            if (_cache.Count < 100_000) _cache[token] = result;
        return result;
    }

    // GPT-2 / CLIP byte → printable character table.
    static string[] BuildByteEncoder()
    {
        var printable = new List<int>();
        for (int b = '!'; b <= '~'; b++) printable.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) printable.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) printable.Add(b);
        var map = new string[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
            map[b] = printable.Contains(b) ? ((char)b).ToString() : ((char)(256 + extra++)).ToString();
        return map;
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    [GeneratedRegex(@"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex OpenClipPattern();
}
