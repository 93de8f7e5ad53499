using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>
/// Multi-resolution hash-grid encoding (Instant-NGP) with tiny-cuda-nn semantics in plain TorchSharp ops:
/// level l has scale s_l = base·b^l − 1 (float32 arithmetic as tcnn), resolution ⌈s_l⌉ + 1, grid position x·s_l + 0.5;
/// it is indexed densely (x + y·R + z·R²) when R³ ≤ T, otherwise by the XOR-prime hash (x·1 ⊕ y·2654435761 ⊕
/// z·805459861) on 32-bit unsigned arithmetic, in both cases modulo the level's entry count; the 8 corners are blended
/// trilinearly. Differentiable with respect to the table and the input points.
/// </summary>
/// <remarks>
/// State dict: one flat parameter <c>params</c> of (Σ_l entries_l)·F values in tcnn's layout (level-major, entry,
/// feature), exactly the tensor tcnn's <c>Encoding.params</c> holds, so a reference checkpoint's
/// <c>…encoding.encoding.encoding.params</c> loads after stripping the prefix. Level entry counts follow tcnn:
/// min(R³ rounded up to a multiple of 8, T). Input points are expected in [0, 1]³ (points outside are encoded like tcnn
/// does, by 32-bit wrap-around, never rejected).
/// </remarks>
public sealed class HashGridEncoding : nn.Module<Tensor, Tensor>
{
    const long Prime1 = 2654435761L;
    const long Prime2 = 805459861L;
    const long Mask32 = 0xFFFFFFFFL;

#pragma warning disable IDE1006 // field name is the state-dict key
    private readonly Parameter @params;
#pragma warning restore IDE1006

    private readonly float[] _scales;
    private readonly long[] _resolutions;
    private readonly long[] _entries;
    private readonly long[] _offsets;
    private readonly bool[] _dense;
    private readonly (int Start, int Length, bool Dense)[] _runs;
    private readonly Dictionary<string, LevelConstants> _constants = new();
    private readonly object _constantsLock = new();

    /// <summary>Creates the encoding with its table initialised U(−r, r).</summary>
    /// <param name="options">Grid configuration.</param>
    /// <param name="generator">Random source for the initialisation (CPU); null uses the global one.</param>
    public HashGridEncoding(HashGridOptions options, Generator? generator = null) : base(nameof(HashGridEncoding))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        int levels = options.Levels;
        _scales = new float[levels];
        _resolutions = new long[levels];
        _entries = new long[levels];
        _offsets = new long[levels];
        _dense = new bool[levels];
        long tableSize = 1L << options.Log2TableSize;
        long offset = 0;
        for (int l = 0; l < levels; l++)
        {
            // tcnn: grid_scale = exp2f(level * log2f(per_level_scale)) * base_resolution - 1.0f (float32).
            float scale = float.Exp2(l * MathF.Log2((float)options.PerLevelScale)) * options.BaseResolution - 1.0f;
            long resolution = (long)MathF.Ceiling(scale) + 1;
            double cells = Math.Pow(resolution, 3);
            long entries = cells > tableSize ? tableSize : Math.Min(NextMultipleOf8((long)cells), tableSize);
            _scales[l] = scale;
            _resolutions[l] = resolution;
            _entries[l] = entries;
            _offsets[l] = offset;
            _dense[l] = cells <= entries;
            offset += entries;
        }
        if (offset > int.MaxValue) throw new ArgumentException($"The table has {offset} entries; at most {int.MaxValue} are supported (Int32 row indices).", nameof(options));
        TableEntries = offset;
        _runs = BuildRuns(_dense);

        using (var scope = NewDisposeScope())
        {
            var data = rand(new[] { offset * options.FeaturesPerLevel }, ScalarType.Float32, generator: generator)
                .mul_(2 * options.InitRange).sub_(options.InitRange);
            data.DetachFromDisposeScope();
            @params = new Parameter(data);
            @params.DetachFromDisposeScope();
        }
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public HashGridOptions Options { get; }

    /// <summary>Output channels L·F.</summary>
    public int OutputDims => Options.OutputDims;

    /// <summary>Total table entries Σ_l entries_l (rows of the [entries, F] view of <c>params</c>).</summary>
    public long TableEntries { get; }

    /// <summary>Number of trainable values (entries · F), as tcnn's <c>n_params</c>.</summary>
    public long ParameterCount => TableEntries * Options.FeaturesPerLevel;

    /// <summary>Per-level scale s_l (float32, as tcnn computes it).</summary>
    public IReadOnlyList<float> LevelScales => _scales;

    /// <summary>Per-level grid resolution ⌈s_l⌉ + 1.</summary>
    public IReadOnlyList<long> LevelResolutions => _resolutions;

    /// <summary>Per-level entry count (min(R³ rounded up to 8, T)).</summary>
    public IReadOnlyList<long> LevelEntries => _entries;

    /// <summary>Per-level first row in the table.</summary>
    public IReadOnlyList<long> LevelOffsets => _offsets;

    /// <summary>Whether each level is indexed densely (R³ ≤ T) rather than hashed.</summary>
    public IReadOnlyList<bool> LevelIsDense => _dense;

    /// <summary>The flat table (tcnn layout).</summary>
    public Parameter Table => @params;

    /// <summary>Encodes points [..., 3] in [0, 1]³ to features [..., L·F] (dtype of the table).</summary>
    public override Tensor forward(Tensor points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() < 1 || points.shape[^1] != 3)
            throw new ArgumentException($"Hash-grid input must be [..., 3], got [{string.Join(", ", points.shape)}].", nameof(points));
        using var scope = NewDisposeScope();
        long[] lead = points.shape[..^1];
        var x = points.reshape(-1, 3);
        long n = x.shape[0];
        int levels = Options.Levels, f = Options.FeaturesPerLevel;
        var (rows, weights) = Lookup(x);
        var table = @params.view(TableEntries, f);
        var feats = table.index_select(0, rows.view(-1)).view(n, levels, 8, f);
        var outp = feats.mul(weights.to(table.dtype).unsqueeze(-1)).sum(2);
        var shape = new long[lead.Length + 1];
        lead.CopyTo(shape, 0);
        shape[^1] = levels * f;
        return outp.reshape(shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Table rows [N, L, 8] (Int32) and trilinear weights [N, L, 8] (dtype of the points, differentiable w.r.t. them) of points
    /// [N, 3]. Corner c has offset (c&gt;&gt;2 &amp; 1, c&gt;&gt;1 &amp; 1, c &amp; 1) along (x, y, z).
    /// </summary>
    public (Tensor Rows, Tensor Weights) Lookup(Tensor points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 2 || points.shape[1] != 3)
            throw new ArgumentException($"Lookup expects points [N, 3], got [{string.Join(", ", points.shape)}].", nameof(points));
        if (!points.is_floating_point())
            throw new ArgumentException($"Points must be floating point, got {points.dtype}.", nameof(points));
        using var scope = NewDisposeScope();
        var c = Constants(points.device, points.dtype);
        long n = points.shape[0];
        int levels = Options.Levels;

        var pos = points.unsqueeze(1).mul(c.Scales).add_(0.5);     // [N, L, 3]
        Tensor gridF;
        using (no_grad()) gridF = pos.floor();
        var frac = pos.sub(gridF);
        var grid = gridF.to(ScalarType.Int64);

        var pair = stack(new[] { frac.neg().add_(1.0), frac }, -1);  // [N, L, 3, 2]
        var wx = pair.select(2, 0);
        var wy = pair.select(2, 1);
        var wz = pair.select(2, 2);
        var weights = wx.view(n, levels, 2, 1, 1).mul(wy.view(n, levels, 1, 2, 1)).mul(wz.view(n, levels, 1, 1, 2)).view(n, levels, 8);

        // Everything is reduced on the small per-axis tensors [N, L, 2] in int64 before the 8-corner broadcast, so the
        // full-size [N, L, 8] index work runs in int32 (uint32 wrap is applied per axis: & and ⊕ distribute, + is re-masked).
        var corners = grid.unsqueeze(-1).add(c.Corner01);            // [N, L, 3, 2]
        var parts = new Tensor[_runs.Length];
        for (int r = 0; r < _runs.Length; r++)
        {
            var (start, length, dense) = _runs[r];
            var cr = _runs.Length == 1 ? corners : corners.narrow(1, start, length);
            var cx = cr.select(2, 0);
            var cy = cr.select(2, 1);
            var cz = cr.select(2, 2);
            Tensor idx;
            if (dense)
            {
                var res = c.Resolutions.narrow(0, start, length).view(1, length, 1);
                var res2 = c.Resolutions2.narrow(0, start, length).view(1, length, 1);
                var ix = cx.bitwise_and(Mask32).view(n, length, 2, 1, 1);
                var iy = cy.mul(res).bitwise_and_(Mask32).view(n, length, 1, 2, 1);
                var iz = cz.mul(res2).bitwise_and_(Mask32).view(n, length, 1, 1, 2);
                idx = ix.add(iy).add(iz).bitwise_and_(Mask32)
                    .remainder_(c.Entries.narrow(0, start, length).view(1, length, 1, 1, 1))
                    .to(ScalarType.Int32);
            }
            else
            {
                // Hashed levels hold exactly T = 2^k entries, so "mod T" of the uint32 hash is a mask.
                long tableMask = (1L << Options.Log2TableSize) - 1;
                var hx = cx.bitwise_and(tableMask).to(ScalarType.Int32).view(n, length, 2, 1, 1);
                var hy = cy.mul(Prime1).bitwise_and_(tableMask).to(ScalarType.Int32).view(n, length, 1, 2, 1);
                var hz = cz.mul(Prime2).bitwise_and_(tableMask).to(ScalarType.Int32).view(n, length, 1, 1, 2);
                idx = hx.bitwise_xor(hy).bitwise_xor(hz);
            }
            parts[r] = idx.view(n, length, 8);
        }
        var rows = (parts.Length == 1 ? parts[0] : cat(parts, 1)).add_(c.Offsets.view(1, levels, 1));
        return (rows.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }

    /// <summary>Disposes the table and the cached per-device constants.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_constantsLock)
            {
                foreach (var c in _constants.Values) c.Dispose();
                _constants.Clear();
            }
        }
        base.Dispose(disposing);
    }

    private LevelConstants Constants(Device device, ScalarType dtype)
    {
        string key = $"{device}/{dtype}";
        lock (_constantsLock)
        {
            if (_constants.TryGetValue(key, out var c)) return c;
            c = new LevelConstants(
                tensor(_scales.Select(s => (double)s).ToArray(), ScalarType.Float64).to(dtype, device).view(1, _scales.Length, 1),
                tensor(_resolutions, ScalarType.Int64).to(device),
                tensor(_resolutions.Select(r => r * r).ToArray(), ScalarType.Int64).to(device),
                tensor(_entries, ScalarType.Int64).to(device),
                tensor(_offsets.Select(o => (int)o).ToArray(), ScalarType.Int32).to(device),
                tensor(new long[] { 0, 1 }, ScalarType.Int64).to(device));
            _constants[key] = c;
            return c;
        }
    }

    private static long NextMultipleOf8(long v) => (v + 7) / 8 * 8;

    private static (int, int, bool)[] BuildRuns(bool[] dense)
    {
        var runs = new List<(int, int, bool)>();
        int start = 0;
        for (int l = 1; l <= dense.Length; l++)
        {
            if (l == dense.Length || dense[l] != dense[start])
            {
                runs.Add((start, l - start, dense[start]));
                start = l;
            }
        }
        return runs.ToArray();
    }

    private sealed class LevelConstants : IDisposable
    {
        public LevelConstants(Tensor scales, Tensor resolutions, Tensor resolutions2, Tensor entries, Tensor offsets, Tensor corner01)
        {
            Scales = scales.DetachFromDisposeScope();
            Resolutions = resolutions.DetachFromDisposeScope();
            Resolutions2 = resolutions2.DetachFromDisposeScope();
            Entries = entries.DetachFromDisposeScope();
            Offsets = offsets.DetachFromDisposeScope();
            Corner01 = corner01.DetachFromDisposeScope();
        }

        public Tensor Scales { get; }
        public Tensor Resolutions { get; }
        public Tensor Resolutions2 { get; }
        public Tensor Entries { get; }
        public Tensor Offsets { get; }
        public Tensor Corner01 { get; }

        public void Dispose()
        {
            Scales.Dispose(); Resolutions.Dispose(); Resolutions2.Dispose();
            Entries.Dispose(); Offsets.Dispose(); Corner01.Dispose();
        }
    }
}
