using System.Text.Json;
using System.Text.Json.Serialization;

namespace ScoreDistillation.Diffusion.Loading;

/// <summary>Reads diffusers <c>config.json</c> files into config records.</summary>
internal static class ConfigJson
{
    internal static readonly JsonSerializerOptions Options = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static T Parse<T>(string json, string what)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new InvalidDataException($"{what}: the JSON is null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{what}: invalid config JSON ({e.Message}).", e);
        }
    }

    public static T Load<T>(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Config file not found: {path}", path);
        return Parse<T>(File.ReadAllText(path), path);
    }

    /// <summary>Expands a per-block value given as one entry (applies to all) or one per block.</summary>
    public static T[] PerBlock<T>(IReadOnlyList<T> values, int blocks, string key)
    {
        if (values.Count == 1) return Enumerable.Repeat(values[0], blocks).ToArray();
        if (values.Count != blocks)
            throw new InvalidDataException($"Config '{key}' has {values.Count} entries but the model has {blocks} blocks.");
        return values.ToArray();
    }
}

/// <summary>A JSON value given either as a single item or as a list ("attention_head_dim": 8 or [5, 10, 20, 20]).</summary>
internal sealed class ScalarOrListConverter<T> : JsonConverter<IReadOnlyList<T>>
{
    public override IReadOnlyList<T>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.StartArray)
            return JsonSerializer.Deserialize<T[]>(ref reader, options);
        return new[] { JsonSerializer.Deserialize<T>(ref reader, options)! };
    }

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<T> value, JsonSerializerOptions options)
    {
        if (value.Count == 1) JsonSerializer.Serialize(writer, value[0], options);
        else JsonSerializer.Serialize(writer, value.ToArray(), options);
    }
}
