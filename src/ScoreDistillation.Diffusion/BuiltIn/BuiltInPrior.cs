using System.Globalization;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>Settings of <see cref="BuiltInPrior"/>.</summary>
public sealed record BuiltInPriorOptions
{
    /// <summary>How reference views are rendered and cached (resolution, views per prompt, seed, cameras, renderer).</summary>
    public ReferenceLibraryOptions References { get; init; } = new();

    /// <summary>Text embedding width D (default 1024, the width of SD 2.x and of paper-size generators).</summary>
    public int TextWidth { get; init; } = 1024;

    /// <summary>Token sequence length L (default 8).</summary>
    public int TextTokens { get; init; } = 8;

    /// <summary>Seed of the word vectors.</summary>
    public long TextSeed { get; init; } = 20240601;

    /// <summary>
    /// Weight references by the closeness of their camera to the query camera (a stand-in for a multi-view prior that
    /// cures the Janus problem). Requires <see cref="NoiseQuery.Cameras"/>. Default false (view-agnostic, like SD).
    /// </summary>
    public bool CameraAware { get; init; }

    /// <summary>
    /// Concentration κ of the camera kernel exp(κ·(d_q·d_i − 1)) over unit camera directions (default 8: the weight halves
    /// about 24° away from the query view).
    /// </summary>
    public double CameraConcentration { get; init; } = 8.0;

    /// <summary>
    /// Posed (camera-conditioned) references: when set, the conditional distribution of a prompt at camera c is the single
    /// view of its object rendered from c with this vertical field of view in degrees, so x̂₀ of a conditional row is that
    /// render at every t. It is the exact denoiser of a perfect novel-view prior (what MVDream or Zero-1-to-3 approximate)
    /// and the upper bound of what distillation can recover; unconditional rows stay view-agnostic. Requires
    /// <see cref="NoiseQuery.Cameras"/> and a rendered library; training cameras should use the same field of view
    /// (cameras carry no intrinsics). Default null (off).
    /// </summary>
    public double? PosedFovY { get; init; }

    /// <summary>Posed renders kept for repeated cameras (ASD, VSD and ISM query one camera several times per step; default 64).</summary>
    public int PosedCacheSize { get; init; } = 64;

    /// <summary>Dtype of the distance and softmax computation (default float32; float64 for exactness tests).</summary>
    public ScalarType ComputeDType { get; init; } = ScalarType.Float32;
}

/// <summary>
/// The built-in diffusion prior: the exact minimum-MSE denoiser of the reference image distribution of the procedural
/// world, in pixel space (3 channels, latent size = image size), with Stable Diffusion's scaled-linear DDPM schedule.
/// For a row with noisy image x_t at timestep t and reference set {r_i},
/// x̂₀ = Σᵢ softmaxᵢ(−‖x_t − √ᾱ_t r_i‖² / (2(1 − ᾱ_t))) r_i and ε̂ = (x_t − √ᾱ_t x̂₀)/√(1 − ᾱ_t).
/// Conditional rows use their prompt's references, unconditional rows ("") the whole world's. Rows of one query may mix
/// prompts and timesteps: rows are grouped by reference set and each group's distances are one matrix product with a
/// log-sum-exp softmax. The camera-aware variant adds κ·(d_q·d_i) to the logits.
/// </summary>
public sealed class BuiltInPrior : IDiffusionPrior
{
    readonly bool _ownsLibrary;

    /// <summary>Creates a prior over the procedural world (references rendered on first use).</summary>
    public BuiltInPrior(BuiltInPriorOptions? options = null)
        : this(new ReferenceLibrary((options ?? new BuiltInPriorOptions()).References), options, ownsLibrary: true)
    {
    }

    /// <summary>Creates a prior over an existing reference library.</summary>
    /// <param name="library">The references; rendered or explicit.</param>
    /// <param name="options">Prior settings; <see cref="BuiltInPriorOptions.References"/> is ignored.</param>
    /// <param name="ownsLibrary">Dispose the library with the prior.</param>
    public BuiltInPrior(ReferenceLibrary library, BuiltInPriorOptions? options = null, bool ownsLibrary = false)
    {
        ArgumentNullException.ThrowIfNull(library);
        Options = options ?? new BuiltInPriorOptions();
        if (!(Options.CameraConcentration >= 0)) throw new ArgumentOutOfRangeException(nameof(options), Options.CameraConcentration, "CameraConcentration must be ≥ 0.");
        if (Options.PosedFovY is { } fov && !(fov > 0 && fov < 180)) throw new ArgumentOutOfRangeException(nameof(options), fov, "PosedFovY must be in (0°, 180°).");
        if (Options.PosedFovY is not null && library.Options is null) throw new ArgumentException("Posed references need a rendered library (an explicit library cannot render new views).", nameof(library));
        if (Options.PosedCacheSize < 0) throw new ArgumentOutOfRangeException(nameof(options), Options.PosedCacheSize, "PosedCacheSize must be ≥ 0.");
        if (Options.ComputeDType is not (ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"ComputeDType must be float32 or float64, got {Options.ComputeDType}.", nameof(options));
        Library = library;
        _ownsLibrary = ownsLibrary;
        Text = new BuiltInTextEncoder(Options.TextWidth, Options.TextTokens, Options.TextSeed);
        Schedule = NoiseSchedule.ScaledLinear();
        Device = library.Options?.Device ?? CPU;
        ModelId = string.Create(CultureInfo.InvariantCulture,
            $"builtin:{library.Id};{Text.Id};{(Options.PosedFovY is { } f ? $"posed(fovy={f:G6})" : Options.CameraAware ? $"camera-aware(k={Options.CameraConcentration:G6})" : "view-agnostic")}");
    }

    /// <summary>The settings.</summary>
    public BuiltInPriorOptions Options { get; }

    /// <summary>The reference views.</summary>
    public ReferenceLibrary Library { get; }

    /// <summary>The deterministic text encoder.</summary>
    public BuiltInTextEncoder Text { get; }

    /// <inheritdoc />
    public string ModelId { get; }

    /// <inheritdoc />
    public NoiseSchedule Schedule { get; }

    /// <inheritdoc />
    public LatentShape LatentShape => new(3, ImageSize, ImageSize);

    /// <inheritdoc />
    public int ImageSize => Library.ImageSize;

    /// <inheritdoc />
    public int ViewsPerSample => 1;

    /// <inheritdoc />
    public bool UsesCameras => Options.CameraAware || Options.PosedFovY is not null;

    /// <inheritdoc />
    public Device Device { get; }

    /// <inheritdoc />
    public TextConditioning EncodeText(IReadOnlyList<string> prompts)
    {
        var text = Text.Encode(prompts, Device);
        // Render the references of new prompts now, in one batch, rather than inside the first training step.
        if (Library.Options is not null) Library.Prefetch(text.Prompts);
        return text;
    }

    /// <inheritdoc />
    public Tensor EncodeImages(Tensor rgb, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (rgb.dim() != 4 || rgb.shape[1] != 3)
            throw new ArgumentException($"Images must be [B, 3, H, W], got [{string.Join(", ", rgb.shape)}].", nameof(rgb));
        using var scope = NewDisposeScope();
        var x = rgb;
        if (rgb.shape[2] != ImageSize || rgb.shape[3] != ImageSize)
            x = nn.functional.interpolate(rgb, new long[] { ImageSize, ImageSize }, mode: InterpolationMode.Bilinear, align_corners: false);
        return (x * 2 - 1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor DecodeLatents(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        return ((latents.detach() + 1) / 2).clamp(0, 1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor PredictNoise(NoiseQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var x = query.NoisyLatents.detach().to(Options.ComputeDType);
        var a = Schedule.AlphaBarAt(query.Timesteps, 4, Options.ComputeDType);
        var x0 = Denoise(query, x, a);
        var eps = (x - a.sqrt() * x0) / (1 - a).sqrt();
        return eps.to(query.NoisyLatents.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>The MMSE estimate x̂₀ [N, 3, S, S] in the prior's space (x = 2·rgb − 1) for every row of the query.</summary>
    public Tensor PredictOriginal(NoiseQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var x = query.NoisyLatents.detach().to(Options.ComputeDType);
        var a = Schedule.AlphaBarAt(query.Timesteps, 4, Options.ComputeDType);
        return Denoise(query, x, a).to(query.NoisyLatents.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Posterior weights over the references of one prompt for each row of <paramref name="noisy"/> [n, 3, S, S] at
    /// timesteps [n] (and cameras [n, 4, 4] for the camera-aware variant): [n, K], rows sum to one.
    /// </summary>
    public Tensor PosteriorWeights(string prompt, Tensor noisy, Tensor timesteps, Tensor? cameras = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(noisy);
        ArgumentNullException.ThrowIfNull(timesteps);
        CheckLatents(noisy, timesteps);
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        var refs = Library.ForPrompt(prompt);
        var x = noisy.detach().to(Options.ComputeDType).reshape(noisy.shape[0], -1);
        var a = Schedule.AlphaBarAt(timesteps, 2, Options.ComputeDType);
        var dirs = cameras is null ? null : CameraDirections(cameras);
        if (Options.CameraAware && dirs is null) throw new ArgumentException("The camera-aware built-in prior needs cameras.", nameof(cameras));
        return Logits(x, a, refs, Options.CameraAware ? dirs : null).softmax(1).MoveToOuterDisposeScope();
    }

    Tensor Denoise(NoiseQuery query, Tensor x, Tensor a)
    {
        CheckLatents(query.NoisyLatents, query.Timesteps);
        int n = (int)x.shape[0];
        if (query.Text is null || query.Text.dim() != 3 || query.Text.shape[0] != n)
            throw new ArgumentException($"Text must be [{n}, {Options.TextTokens}, {Options.TextWidth}], got [{(query.Text is null ? "null" : string.Join(", ", query.Text.shape))}].", nameof(query));
        Tensor? dirs = null;
        if (Options.PosedFovY is not null && query.Cameras is null)
            throw new ArgumentException("The posed built-in prior needs NoiseQuery.Cameras [N, 4, 4] (camera-to-world).", nameof(query));
        if (Options.PosedFovY is not null && (query.Cameras!.dim() != 3 || query.Cameras.shape[0] != n || query.Cameras.shape[1] != 4 || query.Cameras.shape[2] != 4))
            throw new ArgumentException($"Cameras must be [{n}, 4, 4], got [{string.Join(", ", query.Cameras.shape)}].", nameof(query));
        if (Options.CameraAware)
        {
            if (query.Cameras is null) throw new ArgumentException("The camera-aware built-in prior needs NoiseQuery.Cameras [N, 4, 4] (camera-to-world).", nameof(query));
            dirs = CameraDirections(query.Cameras);
            if (dirs.shape[0] != n) throw new ArgumentException($"Cameras must be [{n}, 4, 4], got [{string.Join(", ", query.Cameras.shape)}].", nameof(query));
        }
        var prompts = Text.Decode(query.Text);
        var flat = x.reshape(n, -1);
        var a2 = a.reshape(n, 1);
        var x0 = zeros_like(flat);
        // One matrix product per distinct reference set (uncond, or one prompt), never per row or per reference.
        foreach (var group in Enumerable.Range(0, n).GroupBy(i => prompts[i]))
        {
            var idx = tensor(group.Select(i => (long)i).ToArray(), ScalarType.Int64, x.device);
            if (Options.PosedFovY is not null && group.Key.Length > 0)
            {
                x0.index_copy_(0, idx, Posed(group.Key, query.Cameras!.index_select(0, idx.to(query.Cameras.device))).to(x.dtype, x.device));
                continue;
            }
            var refs = group.Key.Length == 0 ? Library.Unconditional : Library.ForPrompt(group.Key);
            if (refs.Flat.shape[1] != flat.shape[1])
                throw new InvalidOperationException($"References are {refs.ImageSize}² but the query is {x.shape[2]}×{x.shape[3]}.");
            var xg = flat.index_select(0, idx);
            var ag = a2.index_select(0, idx);
            var w = Logits(xg, ag, refs, dirs?.index_select(0, idx)).softmax(1);
            x0.index_copy_(0, idx, w.matmul(refs.Flat.to(x.dtype)));
        }
        return x0.reshape(x.shape);
    }

    readonly Dictionary<string, LinkedListNode<(string Key, Tensor View)>> _posedIndex = new(StringComparer.Ordinal);
    readonly LinkedList<(string Key, Tensor View)> _posedOrder = new();
    readonly object _posedGate = new();

    /// <summary>Posed references [k, 3·S·S] in the prior's space (2·rgb − 1) for cameras [k, 4, 4], rendering only unseen cameras.</summary>
    Tensor Posed(string prompt, Tensor cameras)
    {
        var c2w = cameras.detach().to(ScalarType.Float32, CPU).contiguous();
        var values = c2w.data<float>().ToArray();
        int k = (int)c2w.shape[0];
        var keys = Enumerable.Range(0, k).Select(i => prompt + "|" + Convert.ToHexString(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan(i * 16, 16)))).ToArray();
        lock (_posedGate)
        {
            var missing = keys.Select((key, i) => (key, i)).Where(p => !_posedIndex.ContainsKey(p.key)).GroupBy(p => p.key).Select(g => g.First().i).ToArray();
            if (missing.Length > 0)
            {
                using var idx = tensor(missing.Select(i => (long)i).ToArray());
                using var rgb = Library.RenderAt(prompt, c2w.index_select(0, idx), Options.PosedFovY!.Value);
                for (int j = 0; j < missing.Length; j++)
                {
                    var view = (rgb[j] * 2 - 1).reshape(-1).to(Options.ComputeDType, Device).DetachFromDisposeScope();
                    _posedIndex[keys[missing[j]]] = _posedOrder.AddFirst((keys[missing[j]], view));
                }
            }
            var result = stack(keys.Select(key =>
            {
                var node = _posedIndex[key];
                _posedOrder.Remove(node);
                _posedOrder.AddFirst(node);
                return node.Value.View;
            }).ToArray(), 0);
            while (_posedOrder.Count > Math.Max(Options.PosedCacheSize, k))
            {
                var last = _posedOrder.Last!;
                _posedOrder.RemoveLast();
                _posedIndex.Remove(last.Value.Key);
                last.Value.View.Dispose();
            }
            return result;
        }
    }

    /// <summary>
    /// Log posterior over references up to a per-row constant: (2√ᾱ x·r_i − ᾱ‖r_i‖²) / (2(1 − ᾱ)) [+ κ d_q·d_i].
    /// ‖x‖² is the same for every reference of a row and cancels in the softmax.
    /// </summary>
    Tensor Logits(Tensor x, Tensor a, ReferenceViews refs, Tensor? dirs)
    {
        var r = refs.Flat.to(x.dtype);
        var dot = x.matmul(r.t());
        var logits = (2 * a.sqrt() * dot - a * refs.SquaredNorms.to(x.dtype).unsqueeze(0)) / (2 * (1 - a));
        if (dirs is not null)
            logits = logits + Options.CameraConcentration * dirs.to(x.dtype).matmul(refs.Directions.to(x.dtype).t());
        return logits;
    }

    static Tensor CameraDirections(Tensor cameras)
    {
        if (cameras.dim() != 3 || cameras.shape[1] != 4 || cameras.shape[2] != 4)
            throw new ArgumentException($"Cameras must be camera-to-world [N, 4, 4], got [{string.Join(", ", cameras.shape)}].", nameof(cameras));
        return nn.functional.normalize(cameras[.., ..3, 3], p: 2, dim: 1, eps: 1e-12);
    }

    void CheckLatents(Tensor latents, Tensor timesteps)
    {
        if (latents.dim() != 4 || latents.shape[1] != 3 || latents.shape[2] != ImageSize || latents.shape[3] != ImageSize)
            throw new ArgumentException($"Noisy latents must be [N, 3, {ImageSize}, {ImageSize}] for the built-in prior, got [{string.Join(", ", latents.shape)}].", nameof(latents));
        if (timesteps.dim() != 1 || timesteps.shape[0] != latents.shape[0])
            throw new ArgumentException($"Timesteps must be [{latents.shape[0]}], got [{string.Join(", ", timesteps.shape)}].", nameof(timesteps));
    }

    /// <summary>Disposes the library if the prior owns it.</summary>
    public void Dispose()
    {
        lock (_posedGate)
        {
            foreach (var (_, view) in _posedOrder) view.Dispose();
            _posedOrder.Clear();
            _posedIndex.Clear();
        }
        if (_ownsLibrary) Library.Dispose();
    }
}
