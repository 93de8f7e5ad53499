using FluentAssertions;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

public class RayMarchingTests
{
    [Fact]
    public void UniformCdfGivesStratifiedEdgesClampedToTheRange()
    {
        using var scope = NewDisposeScope();
        var edges = tensor(new[] { 0.1, 4.0 }).view(1, 2);
        var cdf = tensor(new[] { 0.0, 1.0 }).view(1, 2);
        // Bin centres: samples 0.1 + (k + ½)·3.9/4, edges at the midpoints, outer edges clamped to [0.1, 4].
        var e = RayMarching.ImportanceSample(edges, cdf, 4);
        TensorAssert.Close(e, tensor(new[] { 0.1, 0.1 + 3.9 / 4, 0.1 + 2 * 3.9 / 4, 0.1 + 3 * 3.9 / 4, 4.0 }).view(1, 5), atol: 1e-12);
        // With jitter b the samples shift by (b − ½)·Δ; the first edge is clamped when it would leave the range.
        var j = RayMarching.ImportanceSample(edges, cdf, 4, tensor(new[] { 0.9 }).view(1, 1));
        double step = 3.9 / 4;
        TensorAssert.Close(j, tensor(new[] { 0.1 + 0.4 * step, 0.1 + 1.4 * step, 0.1 + 2.4 * step, 0.1 + 3.4 * step, 4.0 }).view(1, 5), atol: 1e-12);
    }

    [Fact]
    public void ImportanceSamplesConcentrateWhereTheWeightIs()
    {
        using var scope = NewDisposeScope();
        // All mass in [1, 2] (CDF 0 → 1 there), linear CDF within: the n samples are exactly 1 + (k + ½)/n.
        var edges = tensor(new[] { 0.0, 1.0, 2.0, 3.0 }).view(1, 4);
        var cdf = tensor(new[] { 0.0, 0.0, 1.0, 1.0 }).view(1, 4);
        int n = 8;
        var e = RayMarching.ImportanceSample(edges, cdf, n);
        var samples = arange(n, dtype: ScalarType.Float64).add(0.5).div(n).add(1.0);
        var mids = (samples.narrow(0, 1, n - 1) + samples.narrow(0, 0, n - 1)) * 0.5;
        var expected = cat(new[] { tensor(new[] { 1.0 }), mids, tensor(new[] { 2.0 }) }).view(1, n + 1);
        TensorAssert.Close(e, expected, atol: 1e-12);

        // Two bins with mass ¼ and ¾: the fraction of samples in each bin follows the mass.
        var edges2 = tensor(new[] { 0.0, 1.0, 2.0 }).view(1, 3);
        var cdf2 = tensor(new[] { 0.0, 0.25, 1.0 }).view(1, 3);
        var e2 = RayMarching.ImportanceSample(edges2, cdf2, 400);
        var centres = (e2.narrow(1, 1, 400) + e2.narrow(1, 0, 400)) * 0.5;
        (centres < 1.0).sum().item<long>().Should().Be(100);
    }

    [Fact]
    public void CdfAndWeightsMatchClosedForms()
    {
        using var scope = NewDisposeScope();
        var edges = tensor(new[] { 0.0, 0.5, 1.5, 2.0 }).view(1, 4);
        var sigma = tensor(new[] { 2.0, 1.0, 4.0 }).view(1, 3);
        var cdf = RayMarching.CdfFromDensity(edges, sigma);
        var expected = tensor(new[] { 0.0, 1 - Math.Exp(-1.0), 1 - Math.Exp(-2.0), 1.0 }).view(1, 4);
        TensorAssert.Close(cdf, expected, atol: 1e-12);

        var alpha = tensor(new[] { 0.5, 0.25, 1.0, 0.3 }).view(1, 4);
        TensorAssert.Close(RayMarching.WeightsFromAlpha(alpha), tensor(new[] { 0.5, 0.125, 0.375, 0.0 }).view(1, 4), atol: 1e-12);

        // VolSDF density: inv·(1 − ½e^{s·inv}) inside, ½·inv·e^{−s·inv} outside, ½·inv at the surface.
        var s = tensor(new[] { -0.05, 0.0, 0.05 });
        TensorAssert.Close(RayMarching.VolSdfDensity(s, 30), tensor(new[] { 30 * (1 - 0.5 * Math.Exp(-1.5)), 15, 15 * Math.Exp(-1.5) }), atol: 1e-12);
        TensorAssert.Close(RayMarching.VolSdfDensity(s, 1000), RayMarching.VolSdfDensity(s, 80), atol: 0);
    }
}
