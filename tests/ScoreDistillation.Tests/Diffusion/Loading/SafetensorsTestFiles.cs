using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Loading;

/// <summary>Writes safetensors files for loader tests (dtype names written verbatim so bad files can be made on purpose).</summary>
internal static class SafetensorsTestFiles
{
    internal sealed record Item(string Key, string DType, long[] Shape, byte[] Data);

    public static Item From(string key, Tensor t)
    {
        string dtype = t.dtype switch
        {
            ScalarType.Float32 => "F32",
            ScalarType.Float16 => "F16",
            ScalarType.BFloat16 => "BF16",
            ScalarType.Float64 => "F64",
            _ => throw new ArgumentException($"dtype {t.dtype}"),
        };
        using var c = t.detach().contiguous().cpu();
        return new Item(key, dtype, t.shape, c.bytes.ToArray());
    }

    public static void Write(string path, IEnumerable<Item> items)
    {
        var list = items.ToList();
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var it in list)
        {
            header[it.Key] = new Dictionary<string, object> { ["dtype"] = it.DType, ["shape"] = it.Shape, ["data_offsets"] = new[] { offset, offset + it.Data.Length } };
            offset += it.Data.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)(json.Length + pad)));
        fs.Write(json);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        foreach (var it in list) fs.Write(it.Data);
    }

    /// <summary>A fresh temporary directory, deleted by <see cref="IDisposable.Dispose"/>.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sd-loader-" + Guid.NewGuid().ToString("N"));
        public TempDir() => Directory.CreateDirectory(Path);
        public string this[string name] => System.IO.Path.Combine(Path, name);
        public void Dispose()
        {
            try { Directory.Delete(Path, true); } catch (IOException) { }
        }
    }
}
