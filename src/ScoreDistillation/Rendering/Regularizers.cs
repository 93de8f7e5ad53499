using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>
/// A loss weight over training steps in threestudio's <c>C()</c> form [start_step, start_value, end_value, end_step]:
/// start_value before start_step, linear in between, end_value from end_step on. A constant has equal values.
/// </summary>
/// <param name="StartStep">Step where the ramp starts.</param>
/// <param name="StartValue">Value up to <paramref name="StartStep"/>.</param>
/// <param name="EndValue">Value from <paramref name="EndStep"/> on.</param>
/// <param name="EndStep">Step where the ramp ends.</param>
public readonly record struct WeightSchedule(long StartStep, double StartValue, double EndValue, long EndStep)
{
    /// <summary>A constant weight.</summary>
    public static WeightSchedule Constant(double value) => new(0, value, value, 1);

    /// <summary>The weight at <paramref name="step"/>.</summary>
    public double At(long step)
    {
        if (EndStep <= StartStep) return step >= EndStep ? EndValue : StartValue;
        double f = Math.Clamp((double)(step - StartStep) / (EndStep - StartStep), 0.0, 1.0);
        return StartValue + (EndValue - StartValue) * f;
    }
}

/// <summary>Weights of the amortized regularisers (§3.8) for one experiment; the trainer evaluates them per step.</summary>
/// <param name="Eikonal">λ_eikonal.</param>
/// <param name="Sparsity">λ_sparsity.</param>
/// <param name="OpacityEntropy">λ_opaque.</param>
public sealed record RegularizerWeights(WeightSchedule Eikonal, WeightSchedule Sparsity, WeightSchedule OpacityEntropy)
{
    /// <summary>MG15 Hyper-iNGP (50k steps): eikonal [1, 100→1, 5000], opaque [40000, 0→10, 50000], sparsity 20.</summary>
    public static RegularizerWeights HyperIngp50k => new(new(1, 100, 1, 5000), WeightSchedule.Constant(20), new(40000, 0, 10, 50000));

    /// <summary>DF415 3DConv-Net (100k steps): eikonal [1, 100→1, 10000], opaque [80000, 0→10, 100000], sparsity 20.</summary>
    public static RegularizerWeights Conv3DNet100k => new(new(1, 100, 1, 10000), WeightSchedule.Constant(20), new(80000, 0, 10, 100000));

    /// <summary>AT2520 3DConv-Net (50k steps): eikonal [1, 100→1, 5000], opaque [40000, 0→10, 50000], sparsity 20.</summary>
    public static RegularizerWeights Conv3DNet50k => new(new(1, 100, 1, 5000), WeightSchedule.Constant(20), new(40000, 0, 10, 50000));

    /// <summary>CP100k 3DConv-Net (300k steps): eikonal [1, 100→1, 30000], opaque [240000, 0→10, 300001], sparsity 20.</summary>
    public static RegularizerWeights Conv3DNet300k => new(new(1, 100, 1, 30000), WeightSchedule.Constant(20), new(240000, 0, 10, 300001));

    /// <summary>DL17k Triplane-Transformer (100k steps): eikonal 0.01, opaque [80000, 0→1, 100000], sparsity 20.</summary>
    public static RegularizerWeights TriplaneTransformer100k => new(WeightSchedule.Constant(0.01), WeightSchedule.Constant(20), new(80000, 0, 1, 100000));

    /// <summary>Weighted sum λ_e·eikonal + λ_s·sparsity + λ_o·entropy at <paramref name="step"/> for a render (eikonal skipped when the render has no gradients or its weight is 0).</summary>
    public Tensor Loss(RenderResult render, long step)
    {
        ArgumentNullException.ThrowIfNull(render);
        using var scope = NewDisposeScope();
        double le = Eikonal.At(step), ls = Sparsity.At(step), lo = OpacityEntropy.At(step);
        var loss = zeros(Array.Empty<long>(), dtype: render.Opacity.dtype, device: render.Opacity.device);
        if (le != 0 && render.SampleGradients is not null) loss = loss + le * Regularizers.Eikonal(render.SampleGradients);
        if (ls != 0) loss = loss + ls * Regularizers.Sparsity(render.Opacity);
        if (lo != 0) loss = loss + lo * Regularizers.OpacityEntropy(render.Opacity);
        return loss.MoveToOuterDisposeScope();
    }
}

/// <summary>The regularisers of ScaleDreamer's amortized system (§3.8), each a scalar tensor.</summary>
public static class Regularizers
{
    /// <summary>Eikonal mean((‖∇s‖ − 1)²) over all sample points; gradients [..., 3].</summary>
    public static Tensor Eikonal(Tensor gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        if (gradients.shape[^1] != 3) throw new ArgumentException($"Gradients must end in 3, got [{string.Join(", ", gradients.shape)}].", nameof(gradients));
        using var scope = NewDisposeScope();
        return (gradients.norm(-1) - 1).square().mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Eikonal mean((‖∇s‖ − 1)²) with ∇s taken by central differences of step <paramref name="step"/> at
    /// <paramref name="points"/> [B, N, 3] (Neuralangelo's numerical gradients). It needs six geometry evaluations per
    /// point and no double backward, so it is far cheaper than analytic normals through a hash grid, and the step
    /// smooths the hash grid's finest levels.
    /// </summary>
    /// <param name="field">An SDF field (<see cref="FieldKind.SignedDistance"/>) with gradient to its parameters.</param>
    /// <param name="points">Where to evaluate, [B, N, 3] with B = the field's count.</param>
    /// <param name="step">Finite-difference step h (world units).</param>
    public static Tensor NumericalEikonal(IRadianceField field, Tensor points, double step)
    {
        ArgumentNullException.ThrowIfNull(field);
        ArgumentNullException.ThrowIfNull(points);
        if (field.Kind != FieldKind.SignedDistance) throw new ArgumentException($"The eikonal term needs a signed-distance field, got {field.Kind}.", nameof(field));
        if (points.dim() != 3 || points.shape[0] != field.Count || points.shape[2] != 3)
            throw new ArgumentException($"Points must be [{field.Count}, N, 3], got [{string.Join(", ", points.shape)}].", nameof(points));
        if (!(step > 0)) throw new ArgumentOutOfRangeException(nameof(step), step, "The finite-difference step must be > 0.");
        using var scope = NewDisposeScope();
        long n = points.shape[1];
        var offsets = eye(3, dtype: points.dtype, device: points.device) * step;
        // [B, 6, N, 3]: p + h·e_k for k = x, y, z, then p − h·e_k.
        var shifted = cat(new[] { points.unsqueeze(1) + offsets.unsqueeze(1).unsqueeze(0), points.unsqueeze(1) - offsets.unsqueeze(1).unsqueeze(0) }, 1);
        var s = field.QueryGeometry(shifted.reshape(points.shape[0], 6 * n, 3)).reshape(points.shape[0], 6, n);
        var grad = (s[.., ..3] - s[.., 3..]) / (2 * step);
        return (grad.square().sum(1).add(1e-12).sqrt() - 1).square().mean().MoveToOuterDisposeScope();
    }

    /// <summary>Sparsity mean(√(o² + 0.01)) over the opacity map.</summary>
    public static Tensor Sparsity(Tensor opacity)
    {
        ArgumentNullException.ThrowIfNull(opacity);
        using var scope = NewDisposeScope();
        return (opacity.square() + 0.01).sqrt().mean().MoveToOuterDisposeScope();
    }

    /// <summary>Opacity entropy BCE(o, o) = −mean(o·log o + (1 − o)·log(1 − o)), o = clamp(opacity, 1e-3, 1 − 1e-3).</summary>
    public static Tensor OpacityEntropy(Tensor opacity)
    {
        ArgumentNullException.ThrowIfNull(opacity);
        using var scope = NewDisposeScope();
        var o = opacity.clamp(1e-3, 1 - 1e-3);
        // Explicit entropy: equals BCE(o, o) including the gradient through the target, −log(o/(1−o)).
        return (-(o * o.log() + (1 - o) * (1 - o).log()).mean()).MoveToOuterDisposeScope();
    }
}
