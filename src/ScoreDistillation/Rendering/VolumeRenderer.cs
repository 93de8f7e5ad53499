using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// Differentiable volume renderer over any <see cref="IRadianceField"/> (ScaleDreamer's
/// <c>generative-space-volsdf-volume-renderer</c> in dense form). SDF fields are rendered with VolSDF
/// (α = min(σ·Δt, 1) as the reference's first-order alpha); density fields as a NeRF (σ = softplus(raw + bias),
/// α = 1 − exp(−σΔt)). Intervals come from a no-gradient proposal pass plus inverse-CDF importance sampling.
/// </summary>
/// <remarks>
/// Cameras and fields: a render of N cameras over a field batch of B prompts needs N = B·V; the V consecutive cameras
/// b·V … b·V+V−1 see field b (the layout of <see cref="CameraSampler"/> with several views per sample). The training
/// path has no host synchronisation.
/// </remarks>
public sealed class VolumeRenderer
{
    /// <summary>Creates a renderer; validates the options.</summary>
    public VolumeRenderer(VolumeRendererOptions? options = null)
    {
        Options = options ?? new VolumeRendererOptions();
        Options.Validate();
    }

    /// <summary>The settings in use.</summary>
    public VolumeRendererOptions Options { get; }

    /// <summary>Renders the rays of N = B·V cameras through the B fields.</summary>
    /// <param name="field">The fields (B = <see cref="IRadianceField.Count"/>).</param>
    /// <param name="rays">Rays of N cameras, N a multiple of B.</param>
    /// <param name="background">Background along rays leaving the scene; null means black.</param>
    /// <param name="pooledText">Pooled text embeddings [B, D] for text-conditioned backgrounds.</param>
    /// <param name="generator">Source of the stratification jitter; null (or <see cref="VolumeRendererOptions.Stratified"/> off) renders deterministically at bin centres.</param>
    /// <returns>The images and, for unchunked renders, the per-sample quantities. Renders with gradient disabled are chunked over rays and carry no per-sample tensors.</returns>
    public RenderResult Render(IRadianceField field, RayBundle rays, IBackground? background = null, Tensor? pooledText = null, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(field);
        ArgumentNullException.ThrowIfNull(rays);
        int b = field.Count;
        if (b <= 0) throw new ArgumentException("The field batch is empty.", nameof(field));
        if (rays.Count % b != 0)
            throw new ArgumentException($"{rays.Count} cameras cannot be split over {b} fields: the camera count must be a multiple of the field count.", nameof(rays));
        if (pooledText is not null && pooledText.shape[0] != b)
            throw new ArgumentException($"Pooled text has {pooledText.shape[0]} rows but the field batch has {b}.", nameof(pooledText));
        int v = rays.Count / b;
        int h = rays.Height, w = rays.Width;
        long m = (long)v * h * w;
        int s = Options.RenderedSamples;

        using var scope = NewDisposeScope();
        var origins = rays.Origins.reshape(b, m, 3);
        var dirs = rays.Directions.reshape(b, m, 3);
        var jitter = Options.Stratified ? generator : null;
        // Background once for all rays: a random-colour augmentation must draw one coin per render, not per chunk.
        var bg = background is null
            ? zeros(new[] { (long)b, m, 3L }, dtype: dirs.dtype, device: dirs.device)
            : background.Evaluate(dirs, pooledText).reshape(b, m, 3);

        Core result;
        long chunk = Math.Max(1, Options.ChunkPoints / ((long)s * b));
        if (!is_grad_enabled() && m > chunk)
        {
            var parts = new List<Core>();
            for (long start = 0; start < m; start += chunk)
            {
                long len = Math.Min(chunk, m - start);
                // Each chunk's intermediates die with its own scope; only the per-ray outputs survive.
                using var chunkScope = NewDisposeScope();
                var part = RenderCore(field, origins.narrow(1, start, len), dirs.narrow(1, start, len), jitter, keepSamples: false);
                chunkScope.MoveToOuter(new[] { part.RgbFg, part.Opacity, part.Depth, part.ZVar }.Concat(part.Normal is null ? [] : new[] { part.Normal }));
                parts.Add(part);
            }
            result = new Core(
                cat(parts.Select(p => p.RgbFg).ToArray(), 1),
                cat(parts.Select(p => p.Opacity).ToArray(), 1), cat(parts.Select(p => p.Depth).ToArray(), 1),
                cat(parts.Select(p => p.ZVar).ToArray(), 1),
                Options.ComputeNormals ? cat(parts.Select(p => p.Normal!).ToArray(), 1) : null,
                null, null, null, null, null, null);
        }
        else
        {
            result = RenderCore(field, origins, dirs, jitter, keepSamples: true);
        }

        Tensor Image(Tensor t) => t.reshape(rays.Count, h, w, t.shape[^1]).permute(0, 3, 1, 2).contiguous();
        Tensor? PerSample(Tensor? t) => t?.reshape(rays.Count, (long)h * w, s);
        var opacity = result.Opacity;
        var rgb = result.RgbFg + bg * (1 - opacity);
        Tensor? normal = null;
        if (result.Normal is not null)
        {
            var n = nn.functional.normalize(result.Normal, dim: -1).detach();
            normal = Image(opacity * ((n + 1) * 0.5));
        }
        return new RenderResult
        {
            Rgb = Image(rgb),
            RgbForeground = Image(result.RgbFg),
            Background = Image(bg),
            Opacity = Image(opacity),
            Depth = Image(result.Depth),
            ZVariance = Image(result.ZVar),
            Normal = normal,
            SampleWeights = PerSample(result.Weights),
            SampleGeometry = PerSample(result.Geometry),
            SampleGradients = result.Gradients?.reshape(rays.Count, (long)h * w, s, 3),
            SampleAlpha = PerSample(result.Alpha),
            SampleDepths = PerSample(result.TMid),
            SampleIntervals = PerSample(result.Dt),
        }.MoveToOuterDisposeScope();
    }

    /// <summary>Renders <paramref name="cameras"/> at <paramref name="height"/>×<paramref name="width"/> (builds the rays, then <see cref="Render(IRadianceField, RayBundle, IBackground?, Tensor?, Generator?)"/>).</summary>
    public RenderResult Render(IRadianceField field, CameraBatch cameras, int height, int width, IBackground? background = null, Tensor? pooledText = null, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(cameras);
        using var rays = RayBundle.FromCameras(cameras, height, width);
        return Render(field, rays, background, pooledText, generator);
    }

    /// <summary>Interval edges [B, M, S+1] for rays [B, M, 3]: the proposal pass and the importance pass, both without gradient.</summary>
    internal Tensor SampleIntervalsFor(IRadianceField field, Tensor origins, Tensor dirs, Generator? jitter)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var o = Options;
        long b = origins.shape[0], m = origins.shape[1];
        var dev = origins.device;
        var dt = origins.dtype;
        Tensor? Jitter() => jitter is null ? null : rand(new[] { b, m, 1 }, dtype: dt, device: dev, generator: jitter);

        var range = tensor(new[] { o.Near, o.Far }, dtype: dt, device: dev).expand(b, m, 2);
        var uniform = tensor(new[] { 0.0, 1.0 }, dtype: dt, device: dev).expand(b, m, 2);
        var edges = RayMarching.ImportanceSample(range, uniform, o.ProposalSamples, Jitter());
        long k = o.ProposalSamples;
        var mid = (edges.narrow(-1, 1, k) + edges.narrow(-1, 0, k)) * 0.5;
        var pts = origins.unsqueeze(2) + dirs.unsqueeze(2) * mid.unsqueeze(-1);
        var flatPts = pts.reshape(b, m * k, 3);
        var g = field.QueryGeometry(flatPts).reshape(b, m, k);
        var sigma = Density(PreActivation(field.Kind, g, flatPts.reshape(b, m, k, 3)), field.Kind);
        var cdf = RayMarching.CdfFromDensity(edges, sigma);
        var fine = RayMarching.ImportanceSample(edges, cdf, o.ImportanceSamples, Jitter());
        var all = cat(new[] { edges, fine }, -1);
        var (sorted, _) = all.sort(-1);
        return sorted.MoveToOuterDisposeScope();
    }

    Tensor PreActivation(FieldKind kind, Tensor geometry, Tensor points)
    {
        if (kind == FieldKind.SignedDistance || Options.DensityBias == DensityBias.None) return geometry.alias();
        var radius = points.norm(-1);
        return geometry + Options.BlobDensity * (1 - radius / Options.BlobRadius);
    }

    Tensor Density(Tensor pre, FieldKind kind) => kind == FieldKind.SignedDistance
        ? RayMarching.VolSdfDensity(pre, Options.InvStd)
        : nn.functional.softplus(pre);

    sealed record Core(Tensor RgbFg, Tensor Opacity, Tensor Depth, Tensor ZVar, Tensor? Normal,
        Tensor? Weights, Tensor? Geometry, Tensor? Gradients, Tensor? Alpha, Tensor? TMid, Tensor? Dt);

    Core RenderCore(IRadianceField field, Tensor origins, Tensor dirs, Generator? jitter, bool keepSamples)
    {
        var o = Options;
        long b = origins.shape[0], m = origins.shape[1];
        var edges = SampleIntervalsFor(field, origins, dirs, jitter);
        long s = edges.shape[^1] - 1;
        var starts = edges.narrow(-1, 0, s);
        var ends = edges.narrow(-1, 1, s);
        var tMid = (starts + ends) * 0.5;
        var dt = (ends - starts).abs();
        var pts = (origins.unsqueeze(2) + dirs.unsqueeze(2) * tMid.unsqueeze(-1)).reshape(b, m * s, 3);

        var sample = field.Query(pts);
        if (sample.Geometry.numel() != b * m * s || sample.Features.numel() != b * m * s * 3)
            throw new InvalidOperationException($"The field returned geometry [{string.Join(", ", sample.Geometry.shape)}] and features [{string.Join(", ", sample.Features.shape)}] for points [{b}, {m * s}, 3]; expected [{b}, {m * s}, 1] and [{b}, {m * s}, 3].");
        var pre = PreActivation(field.Kind, sample.Geometry.reshape(b, m, s), pts.reshape(b, m, s, 3));
        var sigma = Density(pre, field.Kind);
        var alpha = field.Kind == FieldKind.SignedDistance
            ? (sigma * dt).clamp(0.0, 1.0)
            : 1 - (-(sigma * dt)).exp();
        var weights = RayMarching.WeightsFromAlpha(alpha);
        var colour = sample.Features.reshape(b, m, s, 3).sigmoid();
        if (o.Material == MaterialActivation.SigmoidMipNerf) colour = colour * 1.002 - 0.001;

        var opacity = weights.sum(-1, keepdim: true);
        var depth = (weights * tMid).sum(-1, keepdim: true);
        var rgbFg = (weights.unsqueeze(-1) * colour).sum(2);
        var zvar = (weights * (tMid - depth).square()).sum(-1, keepdim: true);

        Tensor? gradients = null, normal = null;
        if (o.ComputeNormals)
        {
            double eps = o.NormalEpsilon, r = field.Radius;
            var step = torch.eye(3, dtype: pts.dtype, device: pts.device) * eps;
            var offsets = (pts.unsqueeze(2) + step).clamp(-r, r).reshape(b, m * s * 3, 3);
            var gOff = field.QueryGeometry(offsets).reshape(b, m, s, 3);
            var preOff = PreActivation(field.Kind, gOff, offsets.reshape(b, m, s, 3, 3));
            gradients = (preOff - pre.unsqueeze(-1)) / eps;
            var n = nn.functional.normalize(field.Kind == FieldKind.SignedDistance ? gradients : -gradients, dim: -1);
            normal = (weights.unsqueeze(-1) * n).sum(2);
        }

        return keepSamples
            ? new Core(rgbFg, opacity, depth, zvar, normal, weights, pre, gradients, alpha, tMid, dt)
            : new Core(rgbFg, opacity, depth, zvar, normal, null, null, null, null, null, null);
    }
}
