using System.Text.Json;

namespace ScoreDistillation.Training;

/// <summary>Which list of a prompt library to read.</summary>
public enum PromptSplit
{
    /// <summary>Prompts trained on.</summary>
    Train,
    /// <summary>Prompts rendered during validation.</summary>
    Val,
    /// <summary>Prompts rendered for the final evaluation.</summary>
    Test,
}

/// <summary>
/// A ScaleDreamer prompt library: a JSON object <c>{"train": [...], "val": [...], "test": [...]}</c> of prompt strings
/// (the files under ScaleDreamer's <c>load/</c>). Immutable.
/// </summary>
public sealed class PromptLibrary
{
    /// <summary>Creates a library from explicit lists.</summary>
    public PromptLibrary(IReadOnlyList<string> train, IReadOnlyList<string> val, IReadOnlyList<string> test, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(val);
        ArgumentNullException.ThrowIfNull(test);
        Train = train.ToArray();
        Val = val.ToArray();
        Test = test.ToArray();
        Source = source ?? "(in memory)";
    }

    /// <summary>Training prompts (duplicates kept, as the reference samples from the raw list).</summary>
    public IReadOnlyList<string> Train { get; }

    /// <summary>Validation prompts.</summary>
    public IReadOnlyList<string> Val { get; }

    /// <summary>Test prompts.</summary>
    public IReadOnlyList<string> Test { get; }

    /// <summary>Where the library came from (a file path), for messages.</summary>
    public string Source { get; }

    /// <summary>The prompts of one split.</summary>
    public IReadOnlyList<string> this[PromptSplit split] => split switch
    {
        PromptSplit.Train => Train,
        PromptSplit.Val => Val,
        PromptSplit.Test => Test,
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split."),
    };

    /// <summary>A library with a single prompt in every split (prompt-specific training).</summary>
    public static PromptLibrary Single(string prompt)
    {
        if (string.IsNullOrWhiteSpace(prompt)) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        var one = new[] { prompt };
        return new PromptLibrary(one, one, one);
    }

    /// <summary>Loads a library file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="FormatException">The file is not a valid library; the message names the file and the problem.</exception>
    public static PromptLibrary Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Prompt library '{path}' does not exist.", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses library JSON text.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">A name for messages (e.g. the file path).</param>
    /// <exception cref="FormatException">The text is not a valid library.</exception>
    public static PromptLibrary Parse(string json, string source = "(text)")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new FormatException($"Prompt library '{source}' is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine}): {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new FormatException($"Prompt library '{source}' must be a JSON object {{\"train\": [...], \"val\": [...], \"test\": [...]}}, but its root is a {root.ValueKind}.");
            var unknown = root.EnumerateObject().Select(p => p.Name).Where(n => n is not ("train" or "val" or "test")).ToArray();
            if (unknown.Length > 0)
                throw new FormatException($"Prompt library '{source}' has unknown key(s) {string.Join(", ", unknown.Select(u => $"\"{u}\""))}; expected only \"train\", \"val\" and \"test\".");
            var train = ReadSplit(root, "train", source);
            if (train.Count == 0) throw new FormatException($"Prompt library '{source}': the \"train\" list is empty.");
            var val = root.TryGetProperty("val", out _) ? ReadSplit(root, "val", source) : train;
            var test = root.TryGetProperty("test", out _) ? ReadSplit(root, "test", source) : val;
            return new PromptLibrary(train, val, test, source);
        }
    }

    static List<string> ReadSplit(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out var arr))
            throw new FormatException($"Prompt library '{source}' has no \"{key}\" list.");
        if (arr.ValueKind != JsonValueKind.Array)
            throw new FormatException($"Prompt library '{source}': \"{key}\" must be an array of strings, but it is a {arr.ValueKind}.");
        var list = new List<string>(arr.GetArrayLength());
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String)
                throw new FormatException($"Prompt library '{source}': \"{key}\"[{i}] must be a string, but it is a {e.ValueKind}.");
            var s = e.GetString()!;
            if (string.IsNullOrWhiteSpace(s))
                throw new FormatException($"Prompt library '{source}': \"{key}\"[{i}] is an empty prompt.");
            list.Add(s);
            i++;
        }
        return list;
    }

    /// <summary>
    /// The slice a data-parallel rank trains on, as the reference's <c>prompts[rank::world_size]</c>.
    /// </summary>
    /// <param name="rank">This process's rank in [0, worldSize).</param>
    /// <param name="worldSize">Number of ranks (≥ 1).</param>
    public PromptLibrary Shard(int rank, int worldSize)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "World size must be at least 1.");
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Rank must be in [0, {worldSize}).");
        if (Train.Count < worldSize)
            throw new InvalidOperationException($"Prompt library '{Source}' has {Train.Count} training prompts, fewer than the {worldSize} ranks: some rank would have none.");
        static string[] Take(IReadOnlyList<string> s, int r, int w) => s.Where((_, i) => i % w == r).ToArray();
        var val = Val.Count >= worldSize ? Take(Val, rank, worldSize) : Val.ToArray();
        var test = Test.Count >= worldSize ? Take(Test, rank, worldSize) : Test.ToArray();
        return new PromptLibrary(Take(Train, rank, worldSize), val, test, $"{Source} [rank {rank}/{worldSize}]");
    }

    /// <summary>Writes the library as JSON (atomically).</summary>
    public void Save(string path)
    {
        var json = JsonSerializer.Serialize(new Dictionary<string, IReadOnlyList<string>> { ["train"] = Train, ["val"] = Val, ["test"] = Test },
            new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(json));
    }
}
