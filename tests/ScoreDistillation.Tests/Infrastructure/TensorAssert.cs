using System.Globalization;
using TorchSharp;
using Xunit.Sdk;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Infrastructure;

/// <summary>Numerical assertions on tensors whose failure messages say where and by how much they differ.</summary>
public static class TensorAssert
{
    /// <summary>Asserts |actual − expected| ≤ atol + rtol·|expected| elementwise (compared in float64 on the CPU).</summary>
    public static void Close(Tensor actual, Tensor expected, double rtol = 1e-5, double atol = 1e-6, string? because = null)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        using var scope = NewDisposeScope();
        string what = because is null ? "" : $" ({because})";
        if (!actual.shape.SequenceEqual(expected.shape))
            throw new XunitException($"Shape mismatch{what}: actual [{string.Join(", ", actual.shape)}] vs expected [{string.Join(", ", expected.shape)}].");
        var a = actual.detach().to(ScalarType.Float64, CPU).flatten();
        var e = expected.detach().to(ScalarType.Float64, CPU).flatten();
        if (a.numel() == 0) return;
        var nonFinite = a.isfinite().logical_not().logical_xor(e.isfinite().logical_not());
        if (nonFinite.any().item<bool>())
        {
            long i = nonFinite.to(ScalarType.Int64).argmax().item<long>();
            throw new XunitException($"Finiteness differs{what} at flat index {i} ({Index(actual.shape, i)}): actual {a[i].item<double>()}, expected {e[i].item<double>()}.");
        }
        var diff = (a - e).abs().nan_to_num(0);
        var allowed = atol + rtol * e.abs().nan_to_num(0);
        var excess = diff - allowed;
        long worst = excess.argmax().item<long>();
        if (excess[worst].item<double>() > 0)
        {
            long worstAbs = diff.argmax().item<long>();
            var rel = diff / e.abs().clamp_min(1e-30);
            long worstRel = rel.argmax().item<long>();
            int bad = (int)(excess > 0).sum().item<long>();
            throw new XunitException(string.Create(CultureInfo.InvariantCulture,
                $"Tensors differ{what}: {bad} of {a.numel()} elements outside atol={atol:G3}, rtol={rtol:G3} (dtypes {actual.dtype}/{expected.dtype}).\n" +
                $"  worst violation at {Index(actual.shape, worst)}: actual {a[worst].item<double>():G9}, expected {e[worst].item<double>():G9}\n" +
                $"  max abs error {diff[worstAbs].item<double>():G4} at {Index(actual.shape, worstAbs)}\n" +
                $"  max rel error {rel[worstRel].item<double>():G4} at {Index(actual.shape, worstRel)}"));
        }
    }

    /// <summary>Maximum absolute difference (for reporting measured errors).</summary>
    public static double MaxAbsError(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        return (actual.detach().to(ScalarType.Float64, CPU) - expected.detach().to(ScalarType.Float64, CPU)).abs().max().item<double>();
    }

    /// <summary>Asserts every element is finite.</summary>
    public static void AllFinite(Tensor actual, string? because = null)
    {
        using var scope = NewDisposeScope();
        var bad = actual.detach().isfinite().logical_not().flatten();
        if (bad.any().item<bool>())
        {
            long i = bad.to(ScalarType.Int64).argmax().item<long>();
            throw new XunitException($"Non-finite value{(because is null ? "" : $" ({because})")} at {Index(actual.shape, i)}.");
        }
    }

    static string Index(long[] shape, long flat)
    {
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            idx[d] = flat % Math.Max(shape[d], 1);
            flat /= Math.Max(shape[d], 1);
        }
        return "[" + string.Join(", ", idx) + "]";
    }
}
