using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>How the "uniform on the sphere" half of the elevation sampler maps the range.</summary>
public enum SphereElevationMode
{
    /// <summary>
    /// The reference formula (threestudio <c>uncond.py</c>, also ScaleDreamer and MVDream): asin(2·U(p₀, p₁) − 1) with
    /// p = (e + 90)/180, i.e. asin of a value uniform in [e_min/90, e_max/90]. For [−10°, 45°] this covers only
    /// [−6.4°, 30°]; kept for fidelity.
    /// </summary>
    Reference,
    /// <summary>Exactly uniform on the sphere over the range: asin(U(sin e_min, sin e_max)) (later threestudio versions).</summary>
    ExactSine,
}

/// <summary>
/// Ranges of the training camera sampler (degrees and world units). The defaults are ScaleDreamer's SD configs
/// (<c>multiprompt-camera-datamodule</c>); <see cref="MultiView"/> gives the MVDream multi-view data module.
/// </summary>
public sealed record CameraSamplerOptions
{
    /// <summary>Elevation range in degrees (default [−10°, 45°]).</summary>
    public (double Min, double Max) Elevation { get; init; } = (-10, 45);

    /// <summary>Azimuth range in degrees (default [−180°, 180°]).</summary>
    public (double Min, double Max) Azimuth { get; init; } = (-180, 180);

    /// <summary>Camera distance range (default [1.0, 1.5]); with <see cref="RelativeRadius"/> it is scaled by 1/tan(fovy/2).</summary>
    public (double Min, double Max) Distance { get; init; } = (1.0, 1.5);

    /// <summary>Vertical field of view range in degrees (default [40°, 70°]).</summary>
    public (double Min, double Max) FovY { get; init; } = (40, 70);

    /// <summary>
    /// Probability that a batch draws elevation uniformly in degrees; otherwise "uniformly on the sphere" as
    /// <see cref="SphereElevation"/> says. One coin per batch, as the reference (default 0.5).
    /// </summary>
    public double UniformInDegreesProbability { get; init; } = 0.5;

    /// <summary>Mapping of the on-sphere elevation draws (default <see cref="SphereElevationMode.Reference"/>).</summary>
    public SphereElevationMode SphereElevation { get; init; } = SphereElevationMode.Reference;

    /// <summary>Stratify azimuth over the batch, az_i = (u_i + i)/B·range + min (reference <c>batch_uniform_azimuth</c>, default true).</summary>
    public bool BatchUniformAzimuth { get; init; } = true;

    /// <summary>
    /// Views per sample V (default 1). With V &gt; 1 each sample shares one elevation, distance and fovy and its V azimuths are
    /// (u + k)/V·range + min, k = 0…V−1 (90° apart for V = 4), consecutive in the batch (sample-major).
    /// </summary>
    public int ViewsPerSample { get; init; } = 1;

    /// <summary>Scale the sampled distance by 1/tan(fovy/2) (MVDream <c>relative_radius</c>, default false).</summary>
    public bool RelativeRadius { get; init; }

    /// <summary>Device of the produced tensors (default CPU).</summary>
    public Device? Device { get; init; }

    /// <summary>Floating dtype of the produced tensors (default float32).</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>ScaleDreamer's SD training cameras (§4.1): the defaults.</summary>
    public static CameraSamplerOptions ScaleDreamerSD => new();

    /// <summary>
    /// MVDream's multi-view data module (§4.2): 4 views 90° apart per sample, elevation [0°, 30°], fovy [15°, 60°],
    /// distance [0.8, 1.0]·1/tan(fovy/2).
    /// </summary>
    public static CameraSamplerOptions MultiView => new()
    {
        Elevation = (0, 30),
        FovY = (15, 60),
        Distance = (0.8, 1.0),
        ViewsPerSample = 4,
        RelativeRadius = true,
    };
}

/// <summary>Random training cameras looking at the origin, reproducible from a <see cref="Generator"/>.</summary>
public sealed class CameraSampler
{
    /// <summary>Creates a sampler; validates the ranges.</summary>
    public CameraSampler(CameraSamplerOptions? options = null)
    {
        Options = options ?? new CameraSamplerOptions();
        Check(Options.Elevation, nameof(Options.Elevation));
        Check(Options.Azimuth, nameof(Options.Azimuth));
        Check(Options.Distance, nameof(Options.Distance));
        Check(Options.FovY, nameof(Options.FovY));
        if (Options.Elevation.Min < -90 || Options.Elevation.Max > 90)
            throw new ArgumentException($"Elevation range must lie in [−90°, 90°], got [{Options.Elevation.Min}, {Options.Elevation.Max}].", nameof(options));
        if (Options.Distance.Min <= 0) throw new ArgumentException($"Distances must be positive, got min {Options.Distance.Min}.", nameof(options));
        if (Options.FovY.Min <= 0 || Options.FovY.Max >= 180) throw new ArgumentException($"fovy must lie in (0°, 180°), got [{Options.FovY.Min}, {Options.FovY.Max}].", nameof(options));
        if (Options.ViewsPerSample < 1) throw new ArgumentException($"ViewsPerSample must be ≥ 1, got {Options.ViewsPerSample}.", nameof(options));
        if (Options.UniformInDegreesProbability is < 0 or > 1)
            throw new ArgumentException($"UniformInDegreesProbability must lie in [0, 1], got {Options.UniformInDegreesProbability}.", nameof(options));

        static void Check((double Min, double Max) r, string name)
        {
            if (!(r.Min <= r.Max) || double.IsNaN(r.Min) || double.IsInfinity(r.Min) || double.IsInfinity(r.Max))
                throw new ArgumentException($"{name} range must satisfy min ≤ max and be finite, got [{r.Min}, {r.Max}].", name);
        }
    }

    /// <summary>The ranges in use.</summary>
    public CameraSamplerOptions Options { get; }

    /// <summary>
    /// Samples <paramref name="samples"/>·V cameras (V = <see cref="CameraSamplerOptions.ViewsPerSample"/>), views of one
    /// sample consecutive. Draws only from <paramref name="generator"/>; no host synchronisation.
    /// </summary>
    public CameraBatch Sample(int samples, Generator generator)
    {
        if (samples <= 0) throw new ArgumentOutOfRangeException(nameof(samples), samples, "Need at least one sample.");
        ArgumentNullException.ThrowIfNull(generator);
        var o = Options;
        int v = o.ViewsPerSample;
        var dev = o.Device ?? CPU;
        using var scope = NewDisposeScope();
        Tensor Uniform(long n) => rand(new[] { n }, dtype: ScalarType.Float64, generator: generator).to(dev);

        // Elevation: one coin for the whole batch (reference: Python random.random() per batch).
        var coin = Uniform(1) < o.UniformInDegreesProbability;
        var u = Uniform(samples);
        var degrees = u * (o.Elevation.Max - o.Elevation.Min) + o.Elevation.Min;
        double x0, x1;
        if (o.SphereElevation == SphereElevationMode.Reference)
            (x0, x1) = (2 * (o.Elevation.Min + 90.0) / 180.0 - 1, 2 * (o.Elevation.Max + 90.0) / 180.0 - 1);
        else
            (x0, x1) = (Math.Sin(o.Elevation.Min * Math.PI / 180), Math.Sin(o.Elevation.Max * Math.PI / 180));
        var sphere = asin(u * (x1 - x0) + x0) * (180.0 / Math.PI);
        var elevation = where(coin, degrees, sphere);

        double azRange = o.Azimuth.Max - o.Azimuth.Min;
        Tensor azimuth;
        if (v > 1)
        {
            var ua = Uniform(samples).view(-1, 1) + arange(v, dtype: ScalarType.Float64, device: dev).view(1, -1);
            azimuth = (ua / v * azRange + o.Azimuth.Min).reshape(-1);
        }
        else if (o.BatchUniformAzimuth)
            azimuth = (Uniform(samples) + arange(samples, dtype: ScalarType.Float64, device: dev)) / samples * azRange + o.Azimuth.Min;
        else
            azimuth = Uniform(samples) * azRange + o.Azimuth.Min;

        var fovy = Uniform(samples) * (o.FovY.Max - o.FovY.Min) + o.FovY.Min;
        var distance = Uniform(samples) * (o.Distance.Max - o.Distance.Min) + o.Distance.Min;
        if (o.RelativeRadius) distance = distance / (fovy * (Math.PI / 360.0)).tan();

        if (v > 1)
        {
            elevation = elevation.repeat_interleave(v);
            fovy = fovy.repeat_interleave(v);
            distance = distance.repeat_interleave(v);
        }
        var batch = Cameras.FromSpherical(elevation.to(o.DType), azimuth.to(o.DType), distance.to(o.DType), fovy.to(o.DType));
        return Cameras.MoveToOuter(batch);
    }
}
