using FluentAssertions;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Platform;

public class TorchSharpLoadTests
{
    [Fact]
    public void Torch_loads_from_the_output_folder_not_from_a_fallback_copy()
    {
        using var x = ones(2, 2);
        x.sum().item<float>().Should().Be(4f);
        // TorchSharp's fallback copies natives into a cpu/ folder next to the app; that must not be what made it load.
        Directory.Exists(Path.Combine(AppContext.BaseDirectory, "cpu")).Should().BeFalse();
    }

    [Fact]
    public void Matmul_backward_gives_the_analytic_gradient()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4, 5, 6 }).reshape(2, 3).requires_grad_();
        var b = tensor(new float[] { 0.5f, -1, 2, 0, 1, 3 }).reshape(3, 2).requires_grad_();
        var y = a.matmul(b);
        TensorAssert.Close(y, tensor(new float[] { 7.5f, 8f, 18f, 14f }).reshape(2, 2));
        y.sum().backward();
        // d(sum(AB))/dA = 1·Bᵀ row sums, d/dB = Aᵀ·1
        TensorAssert.Close(a.grad!, tensor(new float[] { -0.5f, 2, 4, -0.5f, 2, 4 }).reshape(2, 3));
        TensorAssert.Close(b.grad!, tensor(new float[] { 5, 5, 7, 7, 9, 9 }).reshape(3, 2));
    }
}
