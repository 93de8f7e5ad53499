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
}
