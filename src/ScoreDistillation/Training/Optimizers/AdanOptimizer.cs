using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Training.Optimizers;

/// <summary>
/// Adan (Xie et al. 2022) as threestudio's <c>systems/optimizers.py</c> (from the official implementation), with
/// <c>no_prox = false</c> and no gradient clipping. Per parameter: d = g − g_prev (0 at the first step),
/// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)d, n ← β₃n + (1−β₃)(g + β₂d)², then
/// p ← (p − lr/bc₁·m/(√n/√bc₃ + ε) − lr·β₂/bc₂·v/(√n/√bc₃ + ε)) / (1 + lr·wd). Note the reference names its β's so that
/// the moving averages keep β (not 1 − β) of the old value: the defaults are (0.98, 0.92, 0.99).
/// </summary>
public sealed class AdanOptimizer : ParameterGroupOptimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="groups">Parameter groups.</param>
    /// <param name="beta1">Gradient average decay (0.98).</param>
    /// <param name="beta2">Gradient-difference average decay (0.92).</param>
    /// <param name="beta3">Second-moment decay (0.99).</param>
    /// <param name="eps">ε (1e-15 in ScaleDreamer's configs; the optimizer default is 1e-8).</param>
    /// <param name="noProx">False (reference): weight decay as a proximal division; true: multiplicative decay before the step.</param>
    public AdanOptimizer(IEnumerable<ParameterGroup> groups, double beta1 = 0.98, double beta2 = 0.92, double beta3 = 0.99, double eps = 1e-15, bool noProx = false)
        : base(groups)
    {
        foreach (var (n, b) in new[] { (nameof(beta1), beta1), (nameof(beta2), beta2), (nameof(beta3), beta3) })
            if (b is < 0 or >= 1) throw new ArgumentOutOfRangeException(n, b, "β must be in [0, 1).");
        Beta1 = beta1; Beta2 = beta2; Beta3 = beta3; Eps = eps; NoProx = noProx;
    }

    /// <summary>β₁.</summary>
    public double Beta1 { get; }
    /// <summary>β₂.</summary>
    public double Beta2 { get; }
    /// <summary>β₃.</summary>
    public double Beta3 { get; }
    /// <summary>ε.</summary>
    public double Eps { get; }
    /// <summary>Decay mode.</summary>
    public bool NoProx { get; }

    /// <inheritdoc/>
    public override string Name => "Adan";

    /// <inheritdoc/>
    protected override void UpdateParameter(ParameterGroup group, int index, Parameter parameter, Tensor grad, long step)
    {
        double lr = group.LearningRate, wd = group.WeightDecay;
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step), bc3 = 1 - Math.Pow(Beta3, step);
        var m = GetState(group, index, "exp_avg", parameter);
        var n = GetState(group, index, "exp_avg_sq", parameter);
        var v = GetState(group, index, "exp_avg_diff", parameter);
        var negPrev = GetState(group, index, "neg_pre_grad", parameter);
        if (step == 1) negPrev.copy_(grad).neg_();

        var diff = negPrev.add(grad);                       // g − g_prev
        m.mul_(Beta1).add_(grad, 1 - Beta1);
        v.mul_(Beta2).add_(diff, 1 - Beta2);
        var u = diff.mul_(Beta2).add_(grad);                // g + β₂·d
        n.mul_(Beta3).addcmul_(u, u, 1 - Beta3);

        var denom = (n.sqrt() / Math.Sqrt(bc3)).add_(Eps);
        if (NoProx)
        {
            if (wd != 0) parameter.mul_(1 - lr * wd);
            parameter.addcdiv_(m, denom, -lr / bc1);
            parameter.addcdiv_(v, denom, -lr * Beta2 / bc2);
        }
        else
        {
            parameter.addcdiv_(m, denom, -lr / bc1);
            parameter.addcdiv_(v, denom, -lr * Beta2 / bc2);
            if (wd != 0) parameter.div_(1 + lr * wd);
        }
        negPrev.copy_(grad).neg_();
    }
}
