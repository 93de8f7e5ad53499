using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Training.Optimizers;

/// <summary>
/// Adam (torch.optim.Adam / AdamW semantics, bias-corrected). ScaleDreamer's amortized configs use β = (0, 0.99),
/// ε = 1e-8 without weight decay; with β₁ = 0 there is no momentum.
/// </summary>
public sealed class AdamOptimizer : ParameterGroupOptimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="groups">Parameter groups with their learning rates.</param>
    /// <param name="beta1">First-moment decay (reference 0).</param>
    /// <param name="beta2">Second-moment decay (reference 0.99).</param>
    /// <param name="eps">Denominator ε (reference 1e-8).</param>
    /// <param name="decoupledWeightDecay">True: AdamW (p ← p·(1 − lr·wd)); false: L2 added to the gradient.</param>
    public AdamOptimizer(IEnumerable<ParameterGroup> groups, double beta1 = 0.0, double beta2 = 0.99, double eps = 1e-8, bool decoupledWeightDecay = true)
        : base(groups)
    {
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1));
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2));
        Beta1 = beta1; Beta2 = beta2; Eps = eps; DecoupledWeightDecay = decoupledWeightDecay;
    }

    /// <summary>β₁.</summary>
    public double Beta1 { get; }
    /// <summary>β₂.</summary>
    public double Beta2 { get; }
    /// <summary>ε.</summary>
    public double Eps { get; }
    /// <summary>AdamW-style decay.</summary>
    public bool DecoupledWeightDecay { get; }

    /// <inheritdoc/>
    public override string Name => "Adam";

    /// <inheritdoc/>
    protected override void UpdateParameter(ParameterGroup group, int index, Parameter parameter, Tensor grad, long step)
    {
        double lr = group.LearningRate, wd = group.WeightDecay;
        var g = grad;
        if (wd != 0)
        {
            if (DecoupledWeightDecay) parameter.mul_(1 - lr * wd);
            else g = grad.add(parameter, wd);
        }
        var m = GetState(group, index, "exp_avg", parameter);
        var v = GetState(group, index, "exp_avg_sq", parameter);
        m.mul_(Beta1).add_(g, 1 - Beta1);
        v.mul_(Beta2).addcmul_(g, g, 1 - Beta2);
        double bc1 = 1 - Math.Pow(Beta1, step);
        double bc2 = 1 - Math.Pow(Beta2, step);
        var denom = (v.sqrt() / Math.Sqrt(bc2)).add_(Eps);
        parameter.addcdiv_(m, denom, -lr / bc1);
    }
}
