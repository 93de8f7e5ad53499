using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using ScoreDistillation.Training;
using SharpGLTF.Memory;
using SharpGLTF.Schema2;

namespace ScoreDistillation.Outputs;

/// <summary>Writes and reads meshes as binary glTF (.glb, via SharpGLTF) and binary little-endian PLY.</summary>
public static class MeshWriter
{
    /// <summary>Writes a GLB with POSITION, COLOR_0 and 32-bit indices (atomically).</summary>
    public static void WriteGlb(Mesh mesh, string path)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        if (mesh.IsEmpty) throw new ArgumentException("The mesh has no triangles; nothing to write.", nameof(mesh));
        var model = ModelRoot.CreateModel();
        var posBytes = MemoryMarshal.AsBytes(mesh.Positions.ToArray().AsSpan()).ToArray();
        var colBytes = MemoryMarshal.AsBytes(mesh.Colors.Select(c => Vector3.Clamp(c, Vector3.Zero, Vector3.One)).ToArray().AsSpan()).ToArray();
        var idxBytes = MemoryMarshal.AsBytes(mesh.Indices.Select(i => (uint)i).ToArray().AsSpan()).ToArray();

        var posView = model.UseBufferView(posBytes, 0, null, 0, BufferMode.ARRAY_BUFFER);
        var colView = model.UseBufferView(colBytes, 0, null, 0, BufferMode.ARRAY_BUFFER);
        var idxView = model.UseBufferView(idxBytes, 0, null, 0, BufferMode.ELEMENT_ARRAY_BUFFER);
        var pos = model.CreateAccessor("POSITION");
        pos.SetVertexData(posView, 0, mesh.Positions.Count, new AttributeFormat(DimensionType.VEC3, EncodingType.FLOAT, false));
        var col = model.CreateAccessor("COLOR_0");
        col.SetVertexData(colView, 0, mesh.Colors.Count, new AttributeFormat(DimensionType.VEC3, EncodingType.FLOAT, false));
        var idx = model.CreateAccessor("indices");
        idx.SetIndexData(idxView, 0, mesh.Indices.Count, IndexEncodingType.UNSIGNED_INT);

        var material = model.CreateMaterial("vertex-colour");
        material.DoubleSided = true;
        var gmesh = model.CreateMesh("object");
        var prim = gmesh.CreatePrimitive();
        prim.SetVertexAccessor("POSITION", pos);
        prim.SetVertexAccessor("COLOR_0", col);
        prim.SetIndexAccessor(idx);
        prim.Material = material;
        model.UseScene("scene").CreateNode("object").Mesh = gmesh;
        AtomicFile.Write(path, s => model.WriteGLB(s));
    }

    /// <summary>Reads the first primitive of a GLB written by <see cref="WriteGlb"/> (or any triangle GLB).</summary>
    public static Mesh ReadGlb(string path)
    {
        var model = ModelRoot.Load(path);
        var prim = model.LogicalMeshes.FirstOrDefault()?.Primitives.FirstOrDefault()
            ?? throw new InvalidDataException($"'{path}' has no mesh primitive.");
        var positions = prim.GetVertexAccessor("POSITION")?.AsVector3Array().ToArray()
            ?? throw new InvalidDataException($"'{path}' has no POSITION attribute.");
        var colAcc = prim.GetVertexAccessor("COLOR_0");
        Vector3[] colors = colAcc is null ? positions.Select(_ => Vector3.One).ToArray()
            : colAcc.Format.Dimensions == DimensionType.VEC4 ? colAcc.AsVector4Array().Select(c => new Vector3(c.X, c.Y, c.Z)).ToArray()
            : colAcc.AsVector3Array().ToArray();
        var indices = prim.GetIndices().Select(i => (int)i).ToArray();
        return new Mesh(positions, colors, indices);
    }

    /// <summary>Writes a binary little-endian PLY with float xyz, uchar rgb and int32 faces (atomically).</summary>
    public static void WritePly(Mesh mesh, string path)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        AtomicFile.Write(path, s =>
        {
            var header = new StringBuilder()
                .Append("ply\nformat binary_little_endian 1.0\ncomment ScoreDistillation\n")
                .Append(CultureInfo.InvariantCulture, $"element vertex {mesh.Positions.Count}\n")
                .Append("property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n")
                .Append(CultureInfo.InvariantCulture, $"element face {mesh.TriangleCount}\n")
                .Append("property list uchar int vertex_indices\nend_header\n");
            using var w = new BinaryWriter(s, Encoding.ASCII, leaveOpen: true);
            w.Write(Encoding.ASCII.GetBytes(header.ToString()));
            for (int i = 0; i < mesh.Positions.Count; i++)
            {
                var p = mesh.Positions[i];
                var c = mesh.Colors[i];
                w.Write(p.X); w.Write(p.Y); w.Write(p.Z);
                w.Write(ToByte(c.X)); w.Write(ToByte(c.Y)); w.Write(ToByte(c.Z));
            }
            for (int t = 0; t < mesh.Indices.Count; t += 3)
            {
                w.Write((byte)3);
                w.Write(mesh.Indices[t]); w.Write(mesh.Indices[t + 1]); w.Write(mesh.Indices[t + 2]);
            }
        });
    }

    /// <summary>Reads a PLY written by <see cref="WritePly"/>.</summary>
    public static Mesh ReadPly(string path)
    {
        using var fs = File.OpenRead(path);
        using var r = new BinaryReader(fs, Encoding.ASCII);
        var lines = new List<string>();
        var sb = new StringBuilder();
        while (true)
        {
            if (fs.Position >= fs.Length) throw new InvalidDataException($"'{path}': PLY header has no end_header.");
            char ch = (char)r.ReadByte();
            if (ch != '\n') { sb.Append(ch); continue; }
            var line = sb.ToString(); sb.Clear();
            lines.Add(line);
            if (line == "end_header") break;
        }
        if (lines[0] != "ply" || !lines.Contains("format binary_little_endian 1.0"))
            throw new InvalidDataException($"'{path}' is not a binary little-endian PLY.");
        int Count(string element) => int.Parse(lines.First(l => l.StartsWith($"element {element} ", StringComparison.Ordinal)).Split(' ')[2], CultureInfo.InvariantCulture);
        int nv = Count("vertex"), nf = Count("face");
        var pos = new Vector3[nv];
        var col = new Vector3[nv];
        for (int i = 0; i < nv; i++)
        {
            pos[i] = new Vector3(r.ReadSingle(), r.ReadSingle(), r.ReadSingle());
            col[i] = new Vector3(r.ReadByte() / 255f, r.ReadByte() / 255f, r.ReadByte() / 255f);
        }
        var idx = new int[nf * 3];
        for (int f = 0; f < nf; f++)
        {
            if (r.ReadByte() != 3) throw new InvalidDataException($"'{path}': face {f} is not a triangle.");
            idx[3 * f] = r.ReadInt32(); idx[3 * f + 1] = r.ReadInt32(); idx[3 * f + 2] = r.ReadInt32();
        }
        return new Mesh(pos, col, idx);
    }

    static byte ToByte(float v) => (byte)Math.Clamp(MathF.Round(v * 255f), 0, 255);
}
