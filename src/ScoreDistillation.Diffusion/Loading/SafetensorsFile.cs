using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Loading;

/// <summary>A validated safetensors header with random access to its tensors (read one at a time to keep peak memory low).</summary>
internal sealed class SafetensorsFile
{
    internal readonly record struct Entry(string DType, ScalarType ScalarType, long[] Shape, long Begin, long End);

    public string Path { get; }
    public long DataStart { get; }
    public IReadOnlyDictionary<string, Entry> Entries { get; }

    SafetensorsFile(string path, long dataStart, Dictionary<string, Entry> entries)
    {
        Path = path;
        DataStart = dataStart;
        Entries = entries;
    }

    internal static readonly IReadOnlyDictionary<string, (ScalarType Type, int Size)> DTypes = new Dictionary<string, (ScalarType, int)>
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1), ["BOOL"] = (ScalarType.Bool, 1),
    };

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Checkpoint file not found: {path}", path);
        using var stream = File.OpenRead(path);
        long length = stream.Length;
        if (length < 8)
            throw new CheckpointException($"Truncated safetensors file '{path}': {length} bytes, fewer than the 8-byte header length.");
        Span<byte> lenBytes = stackalloc byte[8];
        stream.ReadExactly(lenBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLength > (ulong)(length - 8))
            throw new CheckpointException($"Truncated or corrupt safetensors file '{path}': the header declares {headerLength} bytes but only {length - 8} follow.");
        if (headerLength > int.MaxValue)
            throw new CheckpointException($"Safetensors file '{path}': header of {headerLength} bytes is too large.");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        long dataLength = length - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(Encoding.UTF8.GetString(headerBytes).TrimEnd('\0', ' ')); }
        catch (JsonException e) { throw new CheckpointException($"Corrupt safetensors file '{path}': the header is not valid JSON ({e.Message}).", e); }

        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"Corrupt safetensors file '{path}': the header is not a JSON object.");
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                try
                {
                    string dtype = p.Value.GetProperty("dtype").GetString() ?? "";
                    var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    if (!DTypes.TryGetValue(dtype, out var info))
                        throw new CheckpointException($"Unsupported dtype '{dtype}' for tensor '{p.Name}' in safetensors file '{path}' (supported: {string.Join(", ", DTypes.Keys)}).");
                    if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                        throw new CheckpointException($"Corrupt safetensors file '{path}': tensor '{p.Name}' has invalid data_offsets [{string.Join(", ", offsets)}].");
                    long needed = shape.Aggregate(1L, (a, b) => a * b) * info.Size;
                    if (offsets[1] - offsets[0] != needed)
                        throw new CheckpointException($"Corrupt safetensors file '{path}': tensor '{p.Name}' ({dtype} [{string.Join(", ", shape)}]) needs {needed} bytes but its data_offsets span {offsets[1] - offsets[0]}.");
                    if (offsets[1] > dataLength)
                        throw new CheckpointException($"Truncated safetensors file '{path}': tensor '{p.Name}' ends at byte {offsets[1]} of the data section, which has only {dataLength} bytes.");
                    entries[p.Name] = new Entry(dtype, info.Type, shape, offsets[0], offsets[1]);
                }
                catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
                {
                    throw new CheckpointException($"Corrupt safetensors file '{path}': malformed header entry for tensor '{p.Name}' ({e.Message}).", e);
                }
            }
        }
        return new SafetensorsFile(path, dataStart, entries);
    }

    /// <summary>Reads one tensor into a new CPU tensor of the stored dtype.</summary>
    public Tensor Read(FileStream stream, string key)
    {
        var e = Entries[key];
        long count = e.End - e.Begin;
        if (count > int.MaxValue)
            throw new CheckpointException($"Tensor '{key}' in '{Path}' is larger than 2 GB, which is not supported.");
        var buffer = new byte[count];
        stream.Position = DataStart + e.Begin;
        try { stream.ReadExactly(buffer); }
        catch (EndOfStreamException ex) { throw new CheckpointException($"Truncated safetensors file '{Path}' while reading tensor '{key}'.", ex); }
        var t = empty(e.Shape, dtype: e.ScalarType);
        if (count > 0) t.bytes = buffer;
        return t;
    }
}
