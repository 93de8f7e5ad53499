using System.Security.Cryptography;
using System.Text;
using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// Renders reference views of world objects with the library's own <see cref="VolumeRenderer"/> from cameras of the
/// training distribution. Each prompt's cameras come from a generator seeded by (seed, prompt), drawn in batches of
/// <see cref="CameraChunk"/> so that the first k views of a prompt do not depend on how many views are requested.
/// </summary>
internal sealed class ReferenceRenderer
{
    /// <summary>Cameras drawn per sampler call (one elevation coin and one stratified azimuth sweep per chunk).</summary>
    internal const int CameraChunk = 8;

    readonly ReferenceLibraryOptions _options;
    readonly CameraSampler _sampler;
    readonly VolumeRenderer _renderer;
    readonly SolidColorBackground _background;

    public ReferenceRenderer(ReferenceLibraryOptions options)
    {
        _options = options;
        _sampler = new CameraSampler(options.Cameras with { Device = options.Device, DType = ScalarType.Float32 });
        var c = options.Cameras;
        double maxDistance = c.Distance.Max * (c.RelativeRadius ? 1 / Math.Tan(c.FovY.Min * Math.PI / 360) : 1);
        double minDistance = c.Distance.Min * (c.RelativeRadius ? 1 / Math.Tan(c.FovY.Max * Math.PI / 360) : 1);
        double reach = 1.8 * options.ObjectSize;
        _renderer = new VolumeRenderer(options.Renderer with { Near = Math.Max(0.01, minDistance - reach), Far = maxDistance + reach });
        _background = new SolidColorBackground(options.Background.R, options.Background.G, options.Background.B);
        SettingsId = options.Describe();
    }

    public string SettingsId { get; }

    /// <summary>The first <paramref name="count"/> reference cameras of one prompt [count, 4, 4] (camera-to-world).</summary>
    public CameraBatch CamerasFor(string prompt, int count)
    {
        using var g = new Generator(BuiltInTextEncoder.StableHash(_options.Seed, "cameras:" + prompt));
        var batches = new List<CameraBatch>();
        int per = Math.Max(1, CameraChunk / _options.Cameras.ViewsPerSample);
        for (int have = 0; have < count; have += per * _options.Cameras.ViewsPerSample)
            batches.Add(_sampler.Sample(per, g));
        using var scope = NewDisposeScope();
        var c2w = cat(batches.Select(b => b.CameraToWorld).ToArray(), 0)[..count];
        var fov = cat(batches.Select(b => b.FovY).ToArray(), 0)[..count];
        var el = cat(batches.Select(b => b.Elevation).ToArray(), 0)[..count];
        var az = cat(batches.Select(b => b.Azimuth).ToArray(), 0)[..count];
        var d = cat(batches.Select(b => b.Distance).ToArray(), 0)[..count];
        var result = new CameraBatch(c2w.contiguous().MoveToOuterDisposeScope(), fov.contiguous().MoveToOuterDisposeScope(),
            el.contiguous().MoveToOuterDisposeScope(), az.contiguous().MoveToOuterDisposeScope(), d.contiguous().MoveToOuterDisposeScope());
        foreach (var b in batches) b.Dispose();
        return result;
    }

    public ReferenceViews Views(WorldObject obj, int count) => Views(new[] { obj }, count)[0];

    /// <summary>
    /// Renders one object from arbitrary cameras (camera-to-world [n, 4, 4], all with vertical field of view
    /// <paramref name="fovYDeg"/>): [n, 3, S, S] in [0, 1], with the reference settings (samples, shading, background).
    /// Near and far enclose the object from these cameras.
    /// </summary>
    public Tensor RenderPosed(WorldObject obj, Tensor cameraToWorld, double fovYDeg)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var c2w = cameraToWorld.detach().to(ScalarType.Float32, _options.Device ?? CPU).contiguous();
        int n = (int)c2w.shape[0];
        var pos = c2w[.., ..3, 3];
        var distance = pos.norm(1);
        var elevation = (pos[.., 2] / distance.clamp_min(1e-8)).clamp(-1, 1).asin() * (180 / Math.PI);
        var azimuth = atan2(pos[.., 1], pos[.., 0]) * (180 / Math.PI);
        double reach = 1.8 * _options.ObjectSize;
        double near = Math.Max(0.01, distance.min().item<float>() - reach), far = distance.max().item<float>() + reach;
        var renderer = new VolumeRenderer(_options.Renderer with { Near = near, Far = far });
        var field = new ProceduralField(new[] { obj.WithSize(_options.ObjectSize) }, _options.FieldRadius, _options.Shaded);
        var rgb = RenderInChunks(renderer, field, n, (v0, vc) => new CameraBatch(c2w.narrow(0, v0, vc), full(vc, fovYDeg, ScalarType.Float32, c2w.device),
            elevation.narrow(0, v0, vc), azimuth.narrow(0, v0, vc), distance.narrow(0, v0, vc)));
        return rgb[0].MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Renders <paramref name="count"/> views of each of the field's objects, [B, count, 3, S, S] in [0, 1], in calls of at
    /// most <see cref="ReferenceLibraryOptions.RenderPointsPerCall"/> samples, each in its own dispose scope so that long
    /// renders keep memory flat. <paramref name="cameras"/>(v0, vc) gives views v0..v0+vc of every object, object-major.
    /// </summary>
    Tensor RenderInChunks(VolumeRenderer renderer, ProceduralField field, int count, Func<int, int, CameraBatch> cameras)
    {
        int b = field.Count, size = _options.ImageSize;
        long pointsPerView = (long)b * size * size * renderer.Options.RenderedSamples;
        int perCall = (int)Math.Clamp(_options.RenderPointsPerCall / pointsPerView, 1, count);
        var chunks = new List<Tensor>();
        for (int v0 = 0; v0 < count; v0 += perCall)
        {
            using var inner = NewDisposeScope();
            int vc = Math.Min(perCall, count - v0);
            using var batch = cameras(v0, vc);
            using var render = renderer.Render(field, batch, size, size, _background);
            chunks.Add(render.Rgb.clamp(0, 1).reshape(b, vc, 3, size, size).MoveToOuterDisposeScope());
        }
        return cat(chunks.ToArray(), 1);
    }

    /// <summary>Reference views of several objects (each with its own cameras), from the disk cache where present.</summary>
    public ReferenceViews[] Views(IReadOnlyList<WorldObject> objects, int count)
    {
        var result = new ReferenceViews?[objects.Count];
        var missing = new List<int>();
        for (int i = 0; i < objects.Count; i++)
        {
            result[i] = TryLoad(objects[i], count);
            if (result[i] is null) missing.Add(i);
        }
        for (int start = 0; start < missing.Count; start += _options.RenderBatch)
        {
            var idx = missing.Skip(start).Take(_options.RenderBatch).ToList();
            var rendered = Render(idx.Select(i => objects[i]).ToList(), count);
            for (int j = 0; j < idx.Count; j++)
            {
                result[idx[j]] = rendered[j];
                TrySave(objects[idx[j]], count, rendered[j]);
            }
        }
        return result.Select(r => r!).ToArray();
    }

    ReferenceViews[] Render(IReadOnlyList<WorldObject> objects, int count)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        int b = objects.Count;
        var cams = objects.Select(o => CamerasFor(o.Prompt, count)).ToList();
        var field = new ProceduralField(objects.Select(o => o.WithSize(_options.ObjectSize)).ToList(), _options.FieldRadius, _options.Shaded);
        var rgb = RenderInChunks(_renderer, field, count, (v0, vc) =>
        {
            Tensor Slice(Func<CameraBatch, Tensor> pick) => cat(cams.Select(c => pick(c).narrow(0, v0, vc)).ToArray(), 0);
            return new CameraBatch(Slice(c => c.CameraToWorld), Slice(c => c.FovY), Slice(c => c.Elevation), Slice(c => c.Azimuth), Slice(c => c.Distance));
        });
        var views = new ReferenceViews[b];
        for (int i = 0; i < b; i++)
            views[i] = new ReferenceViews(rgb[i], cams[i].CameraToWorld, _options.DType);
        foreach (var c in cams) c.Dispose();
        return views;
    }

    string? CachePath(WorldObject obj, int count)
    {
        if (string.IsNullOrEmpty(_options.CacheDirectory)) return null;
        var key = Encoding.UTF8.GetBytes($"{SettingsId};prompt={obj.Prompt};count={count}");
        var hash = Convert.ToHexString(SHA256.HashData(key))[..24].ToLowerInvariant();
        return Path.Combine(_options.CacheDirectory, $"builtin-{hash}.refs");
    }

    const int Magic = 0x31464552; // "REF1"

    ReferenceViews? TryLoad(WorldObject obj, int count)
    {
        var path = CachePath(obj, count);
        if (path is null || !File.Exists(path)) return null;
        try
        {
            using var reader = new BinaryReader(File.OpenRead(path));
            int s = _options.ImageSize;
            if (reader.ReadInt32() != Magic || reader.ReadInt32() != count || reader.ReadInt32() != s) return null;
            var img = new float[count * 3 * s * s];
            var cam = new float[count * 16];
            for (int i = 0; i < img.Length; i++) img[i] = reader.ReadSingle();
            for (int i = 0; i < cam.Length; i++) cam[i] = reader.ReadSingle();
            using var scope = NewDisposeScope();
            var dev = _options.Device ?? CPU;
            return new ReferenceViews(tensor(img, new long[] { count, 3, s, s }).to(dev), tensor(cam, new long[] { count, 4, 4 }).to(dev), _options.DType);
        }
        catch (IOException)
        {
            // A truncated or unreadable cache file is rendered again.
            return null;
        }
    }

    void TrySave(WorldObject obj, int count, ReferenceViews views)
    {
        var path = CachePath(obj, count);
        if (path is null) return;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = path + "." + Environment.ProcessId + ".tmp";
        using (var writer = new BinaryWriter(File.Create(tmp)))
        {
            using var img = views.Images.to(ScalarType.Float32, CPU).contiguous();
            using var cam = views.CameraToWorld.to(ScalarType.Float32, CPU).contiguous();
            writer.Write(Magic);
            writer.Write(count);
            writer.Write(_options.ImageSize);
            foreach (var v in img.data<float>()) writer.Write(v);
            foreach (var v in cam.data<float>()) writer.Write(v);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
