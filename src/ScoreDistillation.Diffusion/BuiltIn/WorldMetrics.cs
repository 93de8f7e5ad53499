using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>Result of <see cref="WorldMetrics.RetrievalAtOne"/>.</summary>
/// <param name="RecallAtOne">Fraction of images whose best-explaining prompt is their true prompt.</param>
/// <param name="Predicted">Index into the candidate prompts of the best prompt for each image.</param>
/// <param name="Scores">Log-likelihood scores [E, P] (per-pixel kernel, up to a constant).</param>
public sealed record RetrievalResult(double RecallAtOne, IReadOnlyList<int> Predicted, double[,] Scores);

/// <summary>
/// Ground-truth metrics of the built-in world for anything trained against <see cref="BuiltInPrior"/>: 3D IoU of occupancy
/// against the analytic object, mean colour error on its surface, and retrieval R@1 over a prompt set (the stand-in for
/// the paper's CLIP R@1).
/// </summary>
public static class WorldMetrics
{
    /// <summary>
    /// Intersection over union of occupancy between each row of <paramref name="field"/> and its analytic object, on a
    /// regular grid of <paramref name="resolution"/>³ cell centres in [−extent, extent]³. SDF fields are occupied where the
    /// SDF is negative; density fields where softplus(raw) exceeds <paramref name="densityThreshold"/> (no blob bias added).
    /// </summary>
    /// <param name="field">B fields (e.g. a generator's output).</param>
    /// <param name="objects">The B analytic objects they should be.</param>
    /// <param name="resolution">Grid cells per axis (default 96).</param>
    /// <param name="extent">Half-size of the evaluated cube (default 1.0: the region inside the closest training camera).</param>
    /// <param name="densityThreshold">Occupancy threshold of density fields.</param>
    /// <param name="chunk">Points per field query.</param>
    /// <param name="device">Device the field evaluates on (default CPU).</param>
    public static double[] OccupancyIoU(IRadianceField field, IReadOnlyList<WorldObject> objects, int resolution = 96, double extent = 1.0, double densityThreshold = 10.0, int chunk = 1 << 17, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(field);
        ArgumentNullException.ThrowIfNull(objects);
        if (objects.Count != field.Count) throw new ArgumentException($"The field has {field.Count} rows but {objects.Count} objects were given.", nameof(objects));
        if (resolution < 2) throw new ArgumentOutOfRangeException(nameof(resolution));
        if (!(extent > 0)) throw new ArgumentOutOfRangeException(nameof(extent));
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        device ??= CPU;
        var axis = (arange(resolution, ScalarType.Float32, device) + 0.5f) * (2 * extent / resolution) - extent;
        var grids = meshgrid(new[] { axis, axis, axis }, indexing: "ij");
        var all = stack(grids, -1).reshape(-1, 3);
        long total = all.shape[0];
        var inter = zeros(field.Count, ScalarType.Float64, device);
        var union = zeros(field.Count, ScalarType.Float64, device);
        for (long start = 0; start < total; start += chunk)
        {
            using var inner = NewDisposeScope();
            long len = Math.Min(chunk, total - start);
            var pts = all.narrow(0, start, len).unsqueeze(0).expand(field.Count, len, 3).contiguous();
            var occField = Occupied(field, field.QueryGeometry(pts), densityThreshold);
            var occTrue = stack(objects.Select((o, b) => AnalyticShapes.SignedDistance(o, pts[b]).squeeze(-1) < 0).ToArray(), 0);
            inter.add_((occField & occTrue).sum(1).to(ScalarType.Float64));
            union.add_((occField | occTrue).sum(1).to(ScalarType.Float64));
        }
        var iou = (inter / union.clamp_min(1)).cpu();
        return iou.data<double>().ToArray();
    }

    /// <summary>
    /// Mean absolute RGB error (over channels and points, in [0, 1]) between each field's colour, sigmoid(features), and the
    /// analytic object's colour at <paramref name="points"/> points on the object's surface.
    /// </summary>
    /// <param name="field">B fields.</param>
    /// <param name="objects">The B analytic objects.</param>
    /// <param name="points">Surface points per object.</param>
    /// <param name="shaded">Compare with the shaded colour (as the references are rendered, default) or the flat albedo.</param>
    /// <param name="seed">Seed of the surface points.</param>
    /// <param name="activation">Feature-to-RGB activation (default sigmoid, the renderer's default material).</param>
    /// <param name="device">Device the field evaluates on (default CPU).</param>
    public static double[] SurfaceColourError(IRadianceField field, IReadOnlyList<WorldObject> objects, int points = 4096, bool shaded = true, long seed = 0, Func<Tensor, Tensor>? activation = null, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(field);
        ArgumentNullException.ThrowIfNull(objects);
        if (objects.Count != field.Count) throw new ArgumentException($"The field has {field.Count} rows but {objects.Count} objects were given.", nameof(objects));
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        device ??= CPU;
        using var g = new Generator((ulong)seed);
        var surface = stack(objects.Select(o => AnalyticShapes.SurfacePoints(o, points, g).to(device)).ToArray(), 0);
        var sample = field.Query(surface);
        var rgb = activation is null ? sample.Features.sigmoid() : activation(sample.Features);
        var truth = new ProceduralField(objects, Math.Max(field.Radius, objects.Max(o => o.Size) * 1.5), shaded).Colour(surface);
        var err = (rgb.to(ScalarType.Float64) - truth.to(ScalarType.Float64)).abs().mean(new long[] { 1, 2 }).cpu();
        return err.data<double>().ToArray();
    }

    /// <summary>
    /// Retrieval R@1: for each image, the candidate prompt whose references explain it best, score_p =
    /// log mean_i exp(−‖x − r_i‖² / (2σ²·F)) with F the number of values per image (so σ is a per-value noise level);
    /// with <paramref name="cameras"/> and κ &gt; 0 each reference is also weighted by exp(κ·(d·d_i − 1)).
    /// </summary>
    /// <param name="images">Evaluation views [E, 3, H, W] in [0, 1] (resized to the library's resolution).</param>
    /// <param name="truePrompts">The prompt each image was made for (E entries, each among the candidates).</param>
    /// <param name="candidatePrompts">The prompt set to retrieve from.</param>
    /// <param name="library">Reference views of the candidates.</param>
    /// <param name="sigma">Per-value kernel width in the [−1, 1] image space (default 0.1).</param>
    /// <param name="cameras">Optional camera-to-world [E, 4, 4] of the images.</param>
    /// <param name="cameraConcentration">κ of the camera weighting (used only with cameras).</param>
    public static RetrievalResult RetrievalAtOne(Tensor images, IReadOnlyList<string> truePrompts, IReadOnlyList<string> candidatePrompts, ReferenceLibrary library,
        double sigma = 0.1, Tensor? cameras = null, double cameraConcentration = 8.0)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(truePrompts);
        ArgumentNullException.ThrowIfNull(candidatePrompts);
        ArgumentNullException.ThrowIfNull(library);
        if (images.dim() != 4 || images.shape[1] != 3) throw new ArgumentException($"Images must be [E, 3, H, W], got [{string.Join(", ", images.shape)}].", nameof(images));
        int e = (int)images.shape[0];
        if (truePrompts.Count != e) throw new ArgumentException($"{e} images but {truePrompts.Count} true prompts.", nameof(truePrompts));
        if (candidatePrompts.Count == 0) throw new ArgumentException("No candidate prompts.", nameof(candidatePrompts));
        if (!(sigma > 0)) throw new ArgumentOutOfRangeException(nameof(sigma));
        var canon = candidatePrompts.Select(BuiltInTextEncoder.Canonical).ToList();
        var truthIdx = truePrompts.Select(p =>
        {
            int i = canon.IndexOf(BuiltInTextEncoder.Canonical(p));
            return i >= 0 ? i : throw new ArgumentException($"True prompt \"{p}\" is not among the candidates.", nameof(truePrompts));
        }).ToArray();
        library.Prefetch(canon);

        using var scope = NewDisposeScope();
        using var guard = no_grad();
        int s = library.ImageSize;
        var first = library.ForPrompt(canon[0]);
        var x = images.detach().to(first.DType, first.Device);
        if (x.shape[2] != s || x.shape[3] != s)
            x = nn.functional.interpolate(x, new long[] { s, s }, mode: InterpolationMode.Bilinear, align_corners: false);
        x = (x * 2 - 1).reshape(e, -1);
        double f = x.shape[1];
        var xx = x.square().sum(1, keepdim: true);
        Tensor? dirs = cameras is null ? null : nn.functional.normalize(cameras.to(x.dtype, x.device)[.., ..3, 3], p: 2, dim: 1, eps: 1e-12);
        var columns = new Tensor[canon.Count];
        for (int p = 0; p < canon.Count; p++)
        {
            var refs = library.ForPrompt(canon[p]);
            var d2 = (xx - 2 * x.matmul(refs.Flat.t()) + refs.SquaredNorms.unsqueeze(0)).clamp_min(0);
            var logits = -d2 / (2 * sigma * sigma * f);
            if (dirs is not null && cameraConcentration > 0) logits = logits + cameraConcentration * (dirs.matmul(refs.Directions.t()) - 1);
            columns[p] = logits.logsumexp(1) - Math.Log(refs.Count);
        }
        var scores = stack(columns, 1).to(ScalarType.Float64).cpu();
        var best = scores.argmax(1).data<long>().ToArray();
        var host = scores.data<double>().ToArray();
        var table = new double[e, canon.Count];
        for (int i = 0; i < e; i++)
            for (int p = 0; p < canon.Count; p++) table[i, p] = host[i * canon.Count + p];
        int hits = Enumerable.Range(0, e).Count(i => best[i] == truthIdx[i]);
        return new RetrievalResult((double)hits / e, best.Select(b => (int)b).ToArray(), table);
    }

    static Tensor Occupied(IRadianceField field, Tensor geometry, double densityThreshold)
    {
        var g = geometry.squeeze(-1);
        return field.Kind == FieldKind.SignedDistance ? g < 0 : nn.functional.softplus(g) > densityThreshold;
    }
}
