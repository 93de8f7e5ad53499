using FluentAssertions;
using ScoreDistillation.Training.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

public class OptimizerTests
{
    static Parameter Scalar(double v) => new(tensor(new[] { v }, ScalarType.Float64));

    static void SetGrad(Parameter p, double g) => p.grad = tensor(new[] { g }, ScalarType.Float64);

    /// <summary>Adan written out for one scalar with plain doubles, following the reference update order.</summary>
    static double[] AdanByHand(double p, double[] grads, double lr, double b1, double b2, double b3, double eps, double wd)
    {
        double m = 0, v = 0, n = 0, prev = 0;
        var trace = new double[grads.Length];
        for (int k = 0; k < grads.Length; k++)
        {
            int t = k + 1;
            double g = grads[k];
            double d = k == 0 ? 0 : g - prev;
            m = b1 * m + (1 - b1) * g;
            v = b2 * v + (1 - b2) * d;
            double u = g + b2 * d;
            n = b3 * n + (1 - b3) * u * u;
            double denom = Math.Sqrt(n) / Math.Sqrt(1 - Math.Pow(b3, t)) + eps;
            p = p - lr / (1 - Math.Pow(b1, t)) * m / denom - lr * b2 / (1 - Math.Pow(b2, t)) * v / denom;
            p /= 1 + lr * wd;
            prev = g;
            trace[k] = p;
        }
        return trace;
    }

    [Fact]
    public void Adan_matches_a_hand_computed_reference()
    {
        // First step by hand: m = 0.02·0.5, n = 0.01·0.25, denom = 0.05/0.1 = 0.5, p = 1 − (0.1/0.02)·0.01/0.5 = 0.9.
        var p = Scalar(1.0);
        using var opt = new AdanOptimizer(new[] { new ParameterGroup("g", new[] { p }, 0.1) });
        SetGrad(p, 0.5);
        opt.Step();
        p.item<double>().Should().BeApproximately(0.9, 1e-12);

        var grads = new[] { 0.5, -0.2, 0.3, 0.3 };
        var expected = AdanByHand(1.0, grads, 0.1, 0.98, 0.92, 0.99, 1e-15, 0);
        for (int k = 1; k < grads.Length; k++)
        {
            SetGrad(p, grads[k]);
            opt.Step();
            p.item<double>().Should().BeApproximately(expected[k], 1e-12, $"step {k + 1}");
        }
    }

    [Fact]
    public void Adan_proximal_weight_decay_matches_by_hand()
    {
        var p = Scalar(2.0);
        using var opt = new AdanOptimizer(new[] { new ParameterGroup("g", new[] { p }, 0.05, WeightDecay: 0.1) });
        var grads = new[] { 1.0, 0.5, -0.5 };
        var expected = AdanByHand(2.0, grads, 0.05, 0.98, 0.92, 0.99, 1e-15, 0.1);
        for (int k = 0; k < grads.Length; k++)
        {
            SetGrad(p, grads[k]);
            opt.Step();
            p.item<double>().Should().BeApproximately(expected[k], 1e-12);
        }
    }

    [Fact]
    public void Adam_matches_torch_formula_with_reference_betas()
    {
        var p = Scalar(1.0);
        using var opt = new AdamOptimizer(new[] { new ParameterGroup("g", new[] { p }, 0.01) }, beta1: 0.0, beta2: 0.99, eps: 1e-8);
        double m, v = 0, x = 1.0;
        foreach (var (g, t) in new[] { (0.5, 1), (-1.0, 2), (0.25, 3) })
        {
            SetGrad(p, g);
            opt.Step();
            m = g;
            v = 0.99 * v + 0.01 * g * g;
            x -= 0.01 * m / (Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(0.99, t)) + 1e-8);
            p.item<double>().Should().BeApproximately(x, 1e-12);
        }
    }

    [Fact]
    public void Adam_matches_torchsharp_adam()
    {
        var a = new Parameter(tensor(new[] { 0.3f, -0.7f, 1.1f }));
        var b = new Parameter(a.detach().clone());
        using var mine = new AdamOptimizer(new[] { new ParameterGroup("g", new[] { a }, 0.05) }, beta1: 0.9, beta2: 0.99);
        var theirs = optim.Adam(new[] { b }, 0.05, 0.9, 0.99);
        for (int k = 0; k < 5; k++)
        {
            var g = tensor(new[] { 0.2f * k - 0.3f, 0.5f, -0.1f * k });
            a.grad = g.clone();
            b.grad = g.clone();
            mine.Step();
            theirs.step();
        }
        Infrastructure.TensorAssert.Close(a, b, 1e-6, 1e-7);
    }

    [Fact]
    public void Groups_have_their_own_learning_rates_and_state_round_trips()
    {
        var g1 = Scalar(1.0);
        var g2 = Scalar(1.0);
        using var opt = new AdamOptimizer(new[] { new ParameterGroup("generator", new[] { g1 }, 0.1), new ParameterGroup("background", new[] { g2 }, 0.01) }, 0.9, 0.99);
        SetGrad(g1, 1); SetGrad(g2, 1);
        opt.Step();
        (1 - g1.item<double>()).Should().BeApproximately(0.1, 1e-6);
        (1 - g2.item<double>()).Should().BeApproximately(0.01, 1e-6);

        var saved = opt.StateTensors().ToDictionary(kv => kv.Name, kv => kv.Value.clone());
        saved.Keys.Should().Contain(new[] { "generator/0/exp_avg", "generator/step", "background/0/exp_avg_sq" });
        var h1 = Scalar(g1.item<double>());
        var h2 = Scalar(g2.item<double>());
        using var copy = new AdamOptimizer(new[] { new ParameterGroup("generator", new[] { h1 }, 0.1), new ParameterGroup("background", new[] { h2 }, 0.01) }, 0.9, 0.99);
        copy.LoadState(saved);
        SetGrad(g1, -0.5); SetGrad(g2, 0.3); opt.Step();
        SetGrad(h1, -0.5); SetGrad(h2, 0.3); copy.Step();
        h1.item<double>().Should().Be(g1.item<double>());
        h2.item<double>().Should().Be(g2.item<double>());
    }

    [Fact]
    public void Gradient_scaling_supports_accumulation()
    {
        var p = Scalar(0.0);
        using var opt = new AdamOptimizer(new[] { new ParameterGroup("g", new[] { p }, 0.1) });
        SetGrad(p, 3.0);
        opt.ScaleGradients(0.5);
        p.grad!.item<double>().Should().Be(1.5);
        opt.GradientNorm().Should().BeApproximately(1.5, 1e-12);
        opt.ZeroGrad();
        p.grad.Should().BeNull();
    }
}
