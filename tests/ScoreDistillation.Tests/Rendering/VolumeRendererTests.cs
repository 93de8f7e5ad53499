using FluentAssertions;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

public class VolumeRendererTests
{
    readonly ITestOutputHelper _out;
    public VolumeRendererTests(ITestOutputHelper output) => _out = output;

    static VolumeRendererOptions Small => new() { ProposalSamples = 64, ImportanceSamples = 32 };

    /// <summary>Analytic ray–sphere hit distance (NaN where the ray misses) for rays [N, H, W, 3].</summary>
    static Tensor SphereHit(RayBundle rays, double r)
    {
        var o = rays.Origins.to(ScalarType.Float64);
        var d = rays.Directions.to(ScalarType.Float64);
        var bq = (o * d).sum(-1);
        var c = (o * o).sum(-1) - r * r;
        var disc = bq * bq - c;
        return where(disc > 0, -bq - disc.clamp_min(0).sqrt(), full_like(disc, double.NaN));
    }

    [Fact]
    public void SphereSilhouetteOpacityAndDepthMatchRaySphereIntersection()
    {
        using var scope = NewDisposeScope();
        const double r = 0.5;
        using var field = new SphereField(new[] { r });
        using var cams = Cameras.Orbit(1, elevationDeg: 20, distance: 1.5, fovYDeg: 60);
        using var rays = RayBundle.FromCameras(cams, 32, 32);
        var renderer = new VolumeRenderer(Small);
        using var res = renderer.Render(field, rays);

        var hit = SphereHit(rays, r);                       // [1, H, W]
        var hitMask = hit.isnan().logical_not();
        // Distance of each ray from the centre, to exclude silhouette-edge pixels (partial coverage).
        var o = rays.Origins.to(ScalarType.Float64); var d = rays.Directions.to(ScalarType.Float64);
        var closest = (o - d * (o * d).sum(-1, keepdim: true)).norm(-1);
        var interior = closest < r - 0.05;
        // VolSDF with β = 1/30 puts a soft halo outside the surface; beyond 0.2 it is negligible.
        var exterior = closest > r + 0.2;
        foreach (var margin in new[] { 0.05, 0.1, 0.15, 0.2 })
            _out.WriteLine($"max opacity of rays passing > {margin} outside: {res.Opacity.squeeze(1).to(ScalarType.Float64).masked_select(closest > r + margin).max().item<double>():F5}");

        var opacity = res.Opacity.squeeze(1).to(ScalarType.Float64);
        var depth = res.Depth.squeeze(1).to(ScalarType.Float64);
        double minInside = opacity.masked_select(interior).min().item<double>();
        double maxOutside = opacity.masked_select(exterior).max().item<double>();
        var depthErr = (depth - hit).abs().masked_select(interior);
        double maxDepthErr = depthErr.max().item<double>();
        _out.WriteLine($"opacity inside ≥ {minInside:F5}, outside ≤ {maxOutside:F5}, max |depth − hit| inside {maxDepthErr:F5}, pixels inside {interior.sum().item<long>()}");
        minInside.Should().BeGreaterThan(0.999);
        maxOutside.Should().BeLessThan(0.02);
        maxDepthErr.Should().BeLessThan(0.04);
        // Silhouette: thresholded opacity equals the analytic hit mask away from the edge.
        var predicted = opacity > 0.5;
        var decided = interior.logical_or(exterior);
        predicted.masked_select(decided).eq(hitMask.masked_select(decided)).all().item<bool>().Should().BeTrue();
        TensorAssert.AllFinite(res.Rgb);
        res.SampleWeights!.shape.Should().Equal(1, 32 * 32, Small.RenderedSamples);
    }

    [Fact]
    public void NerfModeOpacityIsOneMinusExpOfIntegratedDensity()
    {
        using var scope = NewDisposeScope();
        double raw = -1.5, sigma = Math.Log(1 + Math.Exp(raw));
        var field = new ConstantDensityField(raw);
        var renderer = new VolumeRenderer(Small with { DensityBias = DensityBias.None });
        using var cams = Cameras.Orbit(1);
        using var res = renderer.Render(field, cams, 4, 4);
        double expected = 1 - Math.Exp(-sigma * (4.0 - 0.1));
        TensorAssert.Close(res.Opacity, full(1, 1, 4, 4, (float)expected), atol: 1e-5);
        // Intervals tile [near, far] exactly.
        TensorAssert.Close(res.SampleIntervals!.sum(-1), full(1, 16, 3.9f), atol: 1e-4);
        // Blob bias raises the density near the origin: the optical axis (through the origin) gets more opacity.
        using var axisNone = renderer.Render(field, cams, 1, 1);
        using var axisBlob = new VolumeRenderer(Small).Render(field, cams, 1, 1);
        axisBlob.Opacity.item<float>().Should().BeGreaterThan(axisNone.Opacity.item<float>() + 0.1f);
    }

    [Fact]
    public void TwoFieldsInOneBatchEqualRenderedSeparately()
    {
        using var scope = NewDisposeScope();
        using var both = new SphereField(new[] { 0.5, 0.7 }, new[] { new[] { 1.0, 0, -1 }, new[] { -2.0, 0.5, 0 } });
        using var first = new SphereField(new[] { 0.5 }, new[] { new[] { 1.0, 0, -1 } });
        using var second = new SphereField(new[] { 0.7 }, new[] { new[] { -2.0, 0.5, 0 } });
        // Two views per prompt: cameras 0,1 see field 0 and cameras 2,3 field 1.
        using var cams = new CameraSampler(CameraSamplerOptions.ScaleDreamerSD with { ViewsPerSample = 2 }).Sample(2, new Generator(1));
        using var rays = RayBundle.FromCameras(cams, 8, 8);
        var renderer = new VolumeRenderer(Small);
        var bg = new SolidColorBackground(0.2, 0.4, 0.6);
        using var joint = renderer.Render(both, rays, bg);
        using var r0 = new RayBundle(rays.Origins.narrow(0, 0, 2).contiguous(), rays.Directions.narrow(0, 0, 2).contiguous());
        using var r1 = new RayBundle(rays.Origins.narrow(0, 2, 2).contiguous(), rays.Directions.narrow(0, 2, 2).contiguous());
        using var a = renderer.Render(first, r0, bg);
        using var b = renderer.Render(second, r1, bg);
        TensorAssert.Close(joint.Rgb, cat(new[] { a.Rgb, b.Rgb }), atol: 1e-6);
        TensorAssert.Close(joint.Depth, cat(new[] { a.Depth, b.Depth }), atol: 1e-5);
        TensorAssert.Close(joint.SampleWeights!, cat(new[] { a.SampleWeights!, b.SampleWeights! }), atol: 1e-6);
        // The bigger sphere really differs (the test would be vacuous otherwise).
        TensorAssert.MaxAbsError(a.Opacity, b.Opacity).Should().BeGreaterThan(0.1);
    }

    [Fact]
    public void GradientsReachFieldAndBackgroundParametersAndEikonalIsSmallForAnSdf()
    {
        using var scope = NewDisposeScope();
        using var field = new SphereField(new[] { 0.5, 0.6 }, boxRadius: 10);
        var bg = new NeuralEnvironmentBackground(new Generator(0));
        using var cams = new CameraSampler().Sample(2, new Generator(2));
        var renderer = new VolumeRenderer(Small);
        using var res = renderer.Render(field, cams, 8, 8, bg, generator: new Generator(3));
        var eik = Regularizers.Eikonal(res.SampleGradients!);
        var loss = res.Rgb.mean() + RegularizerWeights.HyperIngp50k.Loss(res, 100);
        loss.backward();
        field.Radii.grad.Should().NotBeNull();
        field.ColourLogits.grad.Should().NotBeNull();
        TensorAssert.AllFinite(field.Radii.grad!);
        (field.Radii.grad!.abs() > 0).all().item<bool>().Should().BeTrue();
        (field.ColourLogits.grad!.abs().sum(-1) > 0).all().item<bool>().Should().BeTrue();
        foreach (var p in bg.parameters())
            (p.grad is not null && p.grad.abs().sum().item<float>() > 0).Should().BeTrue();
        _out.WriteLine($"eikonal of a sphere SDF (forward differences, ε = 0.01): {eik.item<float>():E3}");
        eik.item<float>().Should().BeLessThan(1e-3f);
    }

    [Fact]
    public void ChunkedNoGradRenderEqualsUnchunked()
    {
        using var scope = NewDisposeScope();
        using var field = new SphereField(new[] { 0.5, 0.65 });
        using var cams = Cameras.Orbit(2, elevationDeg: 10);
        using var rays = RayBundle.FromCameras(cams, 8, 8);
        using var full = new VolumeRenderer(Small).Render(field, rays, new SolidColorBackground());
        RenderResult chunked;
        using (no_grad())
            chunked = new VolumeRenderer(Small with { ChunkPoints = 7 * Small.RenderedSamples * 2 }).Render(field, rays, new SolidColorBackground());
        using (chunked)
        {
            chunked.SampleWeights.Should().BeNull();
            TensorAssert.Close(chunked.Rgb, full.Rgb, atol: 1e-6);
            TensorAssert.Close(chunked.Depth, full.Depth, atol: 1e-5);
            TensorAssert.Close(chunked.Normal!, full.Normal!, atol: 1e-5);
        }
        // Chunk intermediates are released per chunk: only the 5 per-ray outputs of each finished chunk stay alive.
        var live = field.LiveTensorsAtQuery.Skip(1).ToArray();   // the first query was the unchunked render
        live.Length.Should().Be(10);
        ((live[^1] - live[0]) / (double)(live.Length - 1)).Should().BeLessThanOrEqualTo(5);
    }

    [Fact]
    public void StratifiedJitterIsSeededAndStaysInsideTheRange()
    {
        using var scope = NewDisposeScope();
        using var field = new SphereField(new[] { 0.5 });
        using var cams = Cameras.Orbit(1);
        var renderer = new VolumeRenderer(Small);
        using var a = renderer.Render(field, cams, 4, 4, generator: new Generator(9));
        using var b = renderer.Render(field, cams, 4, 4, generator: new Generator(9));
        using var c = renderer.Render(field, cams, 4, 4, generator: new Generator(10));
        TensorAssert.Close(a.SampleDepths!, b.SampleDepths!, atol: 0, rtol: 0);
        TensorAssert.MaxAbsError(a.SampleDepths!, c.SampleDepths!).Should().BeGreaterThan(1e-3);
        // Duplicate edges at near/far (proposal and importance both clamp there) give zero-width intervals, as in nerfacc.
        (a.SampleDepths! >= 0.1 - 1e-6).all().item<bool>().Should().BeTrue();
        (a.SampleDepths! <= 4.0 + 1e-6).all().item<bool>().Should().BeTrue();
        (a.SampleIntervals! >= 0).all().item<bool>().Should().BeTrue();
        // nerfacc clamps only the outer edges, so a jittered ray covers [near, far] up to half a proposal bin.
        var covered = a.SampleIntervals!.sum(-1);
        double bin = 3.9 / Small.ProposalSamples;
        (covered <= 3.9 + 1e-4).all().item<bool>().Should().BeTrue();
        (covered >= 3.9 - 0.5 * bin - 1e-4).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void LiveTensorCountStaysFlatOverManyTrainingSteps()
    {
        using var field = new SphereField(new[] { 0.5, 0.6 });
        var renderer = new VolumeRenderer(new VolumeRendererOptions { ProposalSamples = 16, ImportanceSamples = 8 });
        var sampler = new CameraSampler();
        var g = new Generator(4);
        var bg = new RandomSolidColorBackground(new SolidColorBackground(), 0.5, new Generator(5));
        long? baseline = null;
        for (int step = 0; step < 60; step++)
        {
            using (var scope = NewDisposeScope())
            {
                using var cams = sampler.Sample(2, g);
                using var res = renderer.Render(field, cams, 8, 8, bg, generator: g);
                var loss = res.Rgb.mean() + RegularizerWeights.HyperIngp50k.Loss(res, step);
                loss.backward();
                using (no_grad())
                {
                    field.Radii.grad!.zero_();
                    field.ColourLogits.grad!.zero_();
                }
            }
            if (step == 5) baseline = LiveTensors.Count;
            if (step > 5) LiveTensors.Count.Should().Be(baseline!.Value, $"step {step} leaked tensors");
        }
    }

    [Fact]
    public void MismatchedBatchesThrowClearly()
    {
        using var scope = NewDisposeScope();
        using var field = new SphereField(new[] { 0.5, 0.6 });
        using var cams = Cameras.Orbit(3);
        FluentActions.Invoking(() => new VolumeRenderer(Small).Render(field, cams, 2, 2))
            .Should().Throw<ArgumentException>().WithMessage("*multiple of the field count*");
        FluentActions.Invoking(() => new VolumeRenderer(Small with { ProposalSamples = 1 }))
            .Should().Throw<ArgumentException>().WithMessage("*ProposalSamples*");
    }

    [Fact]
    public void ImportanceSamplesGatherAtTheSurfaceInARender()
    {
        using var scope = NewDisposeScope();
        const double r = 0.5;
        using var field = new SphereField(new[] { r });
        using var cams = Cameras.Orbit(1, elevationDeg: 0, distance: 1.5, fovYDeg: 20);
        using var rays = RayBundle.FromCameras(cams, 4, 4);     // all 16 rays hit the sphere
        using var res = new VolumeRenderer(Small).Render(field, rays, generator: new Generator(0));
        var hit = SphereHit(rays, r).view(1, 16, 1).to(ScalarType.Float32);
        hit.isnan().any().item<bool>().Should().BeFalse();
        var near = ((res.SampleDepths! - hit).abs() < 0.1).sum(-1);     // samples within ±0.1 of the surface per ray
        // The 64 uniform proposal intervals put ~3 there (0.2/0.061); most of the 32 importance samples must land there too.
        long fewest = near.min().item<long>();
        _out.WriteLine($"samples within ±0.1 of the surface: min {fewest}, mean {near.to(ScalarType.Float32).mean().item<float>():F1} of {Small.RenderedSamples}");
        fewest.Should().BeGreaterThan(24);
    }
}
