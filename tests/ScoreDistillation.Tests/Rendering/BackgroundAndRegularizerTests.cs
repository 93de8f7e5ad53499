using FluentAssertions;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Rendering;

public class BackgroundAndRegularizerTests
{
    [Fact]
    public void SphericalHarmonicsDegree3AreOrthonormalOnTheSphere()
    {
        using var scope = NewDisposeScope();
        // Fibonacci-sphere quadrature: 4π·mean(Y_i Y_j) ≈ δ_ij.
        int n = 20000;
        var k = arange(n, dtype: ScalarType.Float64) + 0.5;
        var z = 1 - 2 * k / n;
        var phi = k * Math.PI * (3 - Math.Sqrt(5));
        var rxy = (1 - z * z).sqrt();
        var d = stack(new[] { rxy * phi.cos(), rxy * phi.sin(), z }, -1);
        var y = SphericalHarmonicsEncoding.Encode(d, 3);
        y.shape.Should().Equal(n, 9);
        var gram = y.T.mm(y) * (4 * Math.PI / n);
        TensorAssert.Close(gram, eye(9, dtype: ScalarType.Float64), atol: 2e-3);
        // tcnn signs: Y_1 = −0.4886·y, Y_2 = 0.4886·z, Y_3 = −0.4886·x.
        var e = SphericalHarmonicsEncoding.Encode(tensor(new[] { 1.0, 0, 0 }).view(1, 3), 2);
        TensorAssert.Close(e, tensor(new[] { 0.28209479177387814, 0, 0, -0.48860251190291987 }).view(1, 4), atol: 1e-12);
    }

    [Fact]
    public void NeuralEnvironmentBackgroundHasReferenceKeysAndRangeAndIsSeeded()
    {
        using var scope = NewDisposeScope();
        using var bg = new NeuralEnvironmentBackground(new Generator(0));
        var sd = bg.state_dict();
        sd.Keys.Should().BeEquivalentTo("network.layers.0.weight", "network.layers.2.weight", "network.layers.4.weight");
        sd["network.layers.0.weight"].shape.Should().Equal(16, 9);
        sd["network.layers.2.weight"].shape.Should().Equal(16, 16);
        sd["network.layers.4.weight"].shape.Should().Equal(3, 16);
        var dirs = nn.functional.normalize(randn(new long[] { 2, 50, 3 }, generator: new Generator(1)), dim: -1);
        var c = bg.Evaluate(dirs, null);
        c.shape.Should().Equal(2, 50, 3);
        ((c > 0) & (c < 1)).all().item<bool>().Should().BeTrue();
        using var again = new NeuralEnvironmentBackground(new Generator(0));
        TensorAssert.Close(again.Evaluate(dirs, null), c, atol: 0, rtol: 0);
        using var mip = new NeuralEnvironmentBackground(new Generator(0), activation: MaterialActivation.SigmoidMipNerf);
        TensorAssert.Close(mip.Evaluate(dirs, null), c * 1.002 - 0.001, atol: 1e-6);
    }

    [Fact]
    public void RandomSolidColourReplacesTheWholeBackgroundPerPrompt()
    {
        using var scope = NewDisposeScope();
        var inner = new SolidColorBackground(0.25, 0.5, 0.75);
        var dirs = nn.functional.normalize(randn(new long[] { 3, 40, 3 }, generator: new Generator(1)), dim: -1);
        var always = new RandomSolidColorBackground(inner, 1.0, new Generator(2));
        var c = always.Evaluate(dirs, null);
        TensorAssert.Close(c, c.narrow(1, 0, 1).expand(3, 40, 3));              // one colour per prompt
        TensorAssert.MaxAbsError(c.select(1, 0), inner.Evaluate(dirs, null).select(1, 0)).Should().BeGreaterThan(1e-3);
        TensorAssert.MaxAbsError(c[0, 0], c[1, 0]).Should().BeGreaterThan(1e-4);
        var never = new RandomSolidColorBackground(inner, 0.0, new Generator(2));
        TensorAssert.Close(never.Evaluate(dirs, null), inner.Evaluate(dirs, null), atol: 0);
        always.Training = false;
        TensorAssert.Close(always.Evaluate(dirs, null), inner.Evaluate(dirs, null), atol: 0);
        // Half the renders are augmented at p = 0.5 (binomial, 400 draws).
        var half = new RandomSolidColorBackground(inner, 0.5, new Generator(3));
        int replaced = 0;
        for (int i = 0; i < 400; i++)
            using (var s = NewDisposeScope())
                if (TensorAssert.MaxAbsError(half.Evaluate(dirs, null), inner.Evaluate(dirs, null)) > 0) replaced++;
        replaced.Should().BeInRange(160, 240);
    }

    [Fact]
    public void RegularizersMatchClosedForms()
    {
        using var scope = NewDisposeScope();
        var o = tensor(new[] { 0.0, 0.5, 1.0, 0.25 });
        Regularizers.Sparsity(o).item<double>().Should().BeApproximately(
            (Math.Sqrt(0.01) + Math.Sqrt(0.26) + Math.Sqrt(1.01) + Math.Sqrt(0.0725)) / 4, 1e-12);
        static double H(double p) => -(p * Math.Log(p) + (1 - p) * Math.Log(1 - p));
        Regularizers.OpacityEntropy(o).item<double>().Should().BeApproximately((H(1e-3) + H(0.5) + H(1 - 1e-3) + H(0.25)) / 4, 1e-12);
        var g = tensor(new[,] { { 3.0, 4.0, 0.0 }, { 0.0, 0.0, 1.0 } });
        Regularizers.Eikonal(g).item<double>().Should().BeApproximately((16 + 0) / 2.0, 1e-12);
        // Entropy gradient equals BCE(o, o)'s: −log(o/(1−o)) / N.
        var x = tensor(new[] { 0.25, 0.8 }).requires_grad_(true);
        Regularizers.OpacityEntropy(x).backward();
        TensorAssert.Close(x.grad!, tensor(new[] { -Math.Log(0.25 / 0.75) / 2, -Math.Log(0.8 / 0.2) / 2 }), atol: 1e-12);
    }

    [Fact]
    public void WeightSchedulesFollowThreestudioC()
    {
        var w = RegularizerWeights.HyperIngp50k;
        w.Eikonal.At(0).Should().Be(100);
        w.Eikonal.At(1).Should().Be(100);
        w.Eikonal.At(2500).Should().BeApproximately(100 - 99 * 2499.0 / 4999, 1e-9);
        w.Eikonal.At(5000).Should().Be(1);
        w.Eikonal.At(49999).Should().Be(1);
        w.Sparsity.At(123).Should().Be(20);
        w.OpacityEntropy.At(39999).Should().Be(0);
        w.OpacityEntropy.At(45000).Should().BeApproximately(5, 1e-9);
        w.OpacityEntropy.At(60000).Should().Be(10);
        RegularizerWeights.TriplaneTransformer100k.Eikonal.At(77).Should().Be(0.01);
    }
}
