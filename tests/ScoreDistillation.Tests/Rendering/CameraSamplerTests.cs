using FluentAssertions;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

public class CameraSamplerTests
{
    [Fact]
    public void SamplesStayInRangesAndAzimuthIsStratified()
    {
        using var scope = NewDisposeScope();
        var sampler = new CameraSampler();
        var g = new Generator(7);
        for (int step = 0; step < 40; step++)
        {
            using var c = sampler.Sample(8, g);
            c.Count.Should().Be(8);
            var e = c.Elevation; var a = c.Azimuth; var d = c.Distance; var f = c.FovY;
            ((e >= -10 - 1e-4) & (e <= 45 + 1e-4)).all().item<bool>().Should().BeTrue();
            ((d >= 1.0) & (d <= 1.5)).all().item<bool>().Should().BeTrue();
            ((f >= 40) & (f <= 70)).all().item<bool>().Should().BeTrue();
            // Stratified: camera i lies in the i-th of 8 equal azimuth bins of [−180, 180].
            var bins = ((a + 180) / 45).floor().to(ScalarType.Int64);
            TensorAssert.Close(bins.to(ScalarType.Float32), arange(8, dtype: ScalarType.Float32));
            var pos = c.CameraToWorld.narrow(1, 0, 3).select(2, 3);
            TensorAssert.Close(pos.norm(-1), d, atol: 1e-5);
        }
    }

    [Fact]
    public void ElevationMixesUniformInDegreesAndUniformOnSphere()
    {
        using var scope = NewDisposeScope();
        // Pure modes: with p = 1 the mean elevation is the midpoint 17.5°; with p = 0 (uniform sine) it is lower.
        var g = new Generator(3);
        (double Mean, double Min, double Max) Stats(double p, SphereElevationMode mode)
        {
            var s = new CameraSampler(new CameraSamplerOptions { UniformInDegreesProbability = p, SphereElevation = mode });
            using var c = s.Sample(20000, g);
            var e = c.Elevation.to(ScalarType.Float64);
            return (e.mean().item<double>(), e.min().item<double>(), e.max().item<double>());
        }
        static double F(double x) => x * Math.Asin(x) + Math.Sqrt(1 - x * x);   // ∫ asin
        static double MeanAsin(double x0, double x1) => (F(x1) - F(x0)) / (x1 - x0) * 180 / Math.PI;

        Stats(1, SphereElevationMode.Reference).Mean.Should().BeApproximately(17.5, 0.5);
        // Exact: asin(U(sin −10°, sin 45°)), mean ≈ 16.1°, covering the whole range.
        var exact = Stats(0, SphereElevationMode.ExactSine);
        exact.Mean.Should().BeApproximately(MeanAsin(Math.Sin(-10 * Math.PI / 180), Math.Sin(45 * Math.PI / 180)), 0.5);
        exact.Min.Should().BeLessThan(-9.5); exact.Max.Should().BeGreaterThan(44.5);
        // Reference formula: asin(U(−10/90, 45/90)), mean ≈ 11.4°, range [−6.4°, 30°].
        var reference = Stats(0, SphereElevationMode.Reference);
        reference.Mean.Should().BeApproximately(MeanAsin(-10.0 / 90, 45.0 / 90), 0.5);
        reference.Min.Should().BeGreaterThan(-6.5); reference.Max.Should().BeLessThan(30.01);
    }

    [Fact]
    public void SameSeedSameCameras()
    {
        using var scope = NewDisposeScope();
        var s = new CameraSampler();
        using var a = s.Sample(4, new Generator(11));
        using var b = s.Sample(4, new Generator(11));
        TensorAssert.Close(a.CameraToWorld, b.CameraToWorld, atol: 0, rtol: 0);
    }

    [Fact]
    public void MultiViewGivesFourViewsNinetyDegreesApartSharingElevationDistanceFovy()
    {
        using var scope = NewDisposeScope();
        var s = new CameraSampler(CameraSamplerOptions.MultiView);
        using var c = s.Sample(3, new Generator(5));
        c.Count.Should().Be(12);
        var az = c.Azimuth.view(3, 4);
        TensorAssert.Close(az.narrow(1, 1, 3) - az.narrow(1, 0, 3), full(3, 3, 90f), atol: 1e-3);
        foreach (var t in new[] { c.Elevation, c.FovY, c.Distance })
        {
            var v = t.view(3, 4);
            TensorAssert.Close(v, v.narrow(1, 0, 1).expand(3, 4));
        }
        var f = c.FovY; var e = c.Elevation;
        ((f >= 15) & (f <= 60)).all().item<bool>().Should().BeTrue();
        ((e >= -1e-4) & (e <= 30 + 1e-4)).all().item<bool>().Should().BeTrue();
        // Relative radius: distance·tan(fovy/2) ∈ [0.8, 1.0].
        var rel = c.Distance * (f * (Math.PI / 360)).tan();
        ((rel >= 0.8 - 1e-4) & (rel <= 1.0 + 1e-4)).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void BadOptionsThrowWithTheirName()
    {
        FluentActions.Invoking(() => new CameraSampler(new CameraSamplerOptions { Distance = (2, 1) }))
            .Should().Throw<ArgumentException>().WithMessage("*Distance*");
        FluentActions.Invoking(() => new CameraSampler(new CameraSamplerOptions { ViewsPerSample = 0 }))
            .Should().Throw<ArgumentException>().WithMessage("*ViewsPerSample*");
    }
}
