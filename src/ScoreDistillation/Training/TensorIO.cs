using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Training;

/// <summary>Binary (de)serialisation of named tensors: name, dtype, shape, raw little-endian bytes.</summary>
internal static class TensorIO
{
    public static void WriteTensor(BinaryWriter w, Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        w.Write((int)cpu.dtype);
        w.Write(cpu.dim());
        foreach (var s in cpu.shape) w.Write(s);
        var bytes = cpu.bytes;
        w.Write((long)bytes.Length);
        w.Write(bytes);
    }

    public static Tensor ReadTensor(BinaryReader r, string what)
    {
        var dtype = (ScalarType)r.ReadInt32();
        long rank = r.ReadInt64();
        if (rank < 0 || rank > 16) throw new InvalidDataException($"{what}: invalid tensor rank {rank}.");
        var shape = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            shape[i] = r.ReadInt64();
            if (shape[i] < 0) throw new InvalidDataException($"{what}: negative dimension {shape[i]}.");
        }
        long n = r.ReadInt64();
        if (n < 0 || n > r.BaseStream.Length - r.BaseStream.Position)
            throw new InvalidDataException($"{what}: tensor of {n} bytes runs past the end of the data.");
        var t = empty(shape, dtype);
        if (t.NumberOfElements * t.ElementSize != n)
            throw new InvalidDataException($"{what}: {n} bytes do not match shape [{string.Join(", ", shape)}] of {dtype}.");
        var data = r.ReadBytes(checked((int)n));
        if (data.Length != n) throw new EndOfStreamException($"{what}: truncated tensor data.");
        t.bytes = data;
        return t;
    }

    public static void WriteDict(BinaryWriter w, IReadOnlyList<(string Name, Tensor Value)> tensors)
    {
        w.Write(tensors.Count);
        foreach (var (name, value) in tensors)
        {
            w.Write(name);
            WriteTensor(w, value);
        }
    }

    public static Dictionary<string, Tensor> ReadDict(BinaryReader r, string what)
    {
        int count = r.ReadInt32();
        if (count < 0) throw new InvalidDataException($"{what}: negative tensor count.");
        var dict = new Dictionary<string, Tensor>(count);
        for (int i = 0; i < count; i++)
        {
            var name = r.ReadString();
            dict[name] = ReadTensor(r, $"{what} '{name}'");
        }
        return dict;
    }
}
