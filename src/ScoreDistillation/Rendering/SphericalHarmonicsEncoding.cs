using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// Real spherical-harmonics direction encoding with tiny-cuda-nn's <c>SphericalHarmonics</c> constants and signs:
/// degree n gives n² outputs (bands l &lt; n). tcnn maps its [0, 1] input back to [−1, 1] first, so this takes unit
/// directions directly. Degree 3 (9 outputs) is the reference environment-map encoding.
/// </summary>
public static class SphericalHarmonicsEncoding
{
    /// <summary>Output width for <paramref name="degree"/>: degree².</summary>
    public static int OutputDimension(int degree) => degree * degree;

    /// <summary>Encodes unit directions [..., 3] into [..., degree²] for degree 1–3.</summary>
    public static Tensor Encode(Tensor directions, int degree = 3)
    {
        ArgumentNullException.ThrowIfNull(directions);
        if (degree is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(degree), degree, "Supported SH degrees are 1, 2 and 3.");
        if (directions.shape[^1] != 3) throw new ArgumentException($"Directions must end in 3, got [{string.Join(", ", directions.shape)}].", nameof(directions));
        using var scope = NewDisposeScope();
        var x = directions.select(-1, 0);
        var y = directions.select(-1, 1);
        var z = directions.select(-1, 2);
        var outs = new List<Tensor> { full_like(x, 0.28209479177387814) };
        if (degree >= 2)
        {
            outs.Add(-0.48860251190291987 * y);
            outs.Add(0.48860251190291987 * z);
            outs.Add(-0.48860251190291987 * x);
        }
        if (degree >= 3)
        {
            outs.Add(1.0925484305920792 * x * y);
            outs.Add(-1.0925484305920792 * y * z);
            outs.Add(0.94617469575755997 * z * z - 0.31539156525251999);
            outs.Add(-1.0925484305920792 * x * z);
            outs.Add(0.54627421529603959 * (x * x - y * y));
        }
        return stack(outs, -1).MoveToOuterDisposeScope();
    }
}
