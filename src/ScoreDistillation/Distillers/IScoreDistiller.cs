using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>Where training is: step <see cref="Step"/> of <see cref="TotalSteps"/>. Drives annealed t windows and scales.</summary>
/// <param name="Step">Current global step (0-based).</param>
/// <param name="TotalSteps">Planned number of steps.</param>
public readonly record struct TrainingProgress(int Step, int TotalSteps)
{
    /// <summary>Fraction of training done, in [0, 1].</summary>
    public double Fraction => TotalSteps <= 0 ? 0 : Math.Clamp((double)Step / TotalSteps, 0, 1);
}

/// <summary>Explicit values that replace the distiller's random draws, for tests and research. Tensors are borrowed.</summary>
/// <param name="Timesteps">t [B] (int64).</param>
/// <param name="TimestepShift">Δt [B] (int64), ASD only.</param>
/// <param name="Noise">ε shaped like the latents [B, C, h, w].</param>
public sealed record DistillationOverrides(Tensor? Timesteps = null, Tensor? TimestepShift = null, Tensor? Noise = null);

/// <summary>One distillation request. Tensors are borrowed: the distiller never disposes them.</summary>
/// <param name="Images">Rendered RGB [B, 3, H, W] in [0, 1] that require grad.</param>
/// <param name="Prompts">The B prompts (view-contiguous for multi-view priors).</param>
/// <param name="Cameras">The B cameras the images were rendered from (view-dependent prompting, camera-aware priors, VSD's ε_φ).</param>
/// <param name="Progress">Training progress for annealed schedules.</param>
/// <param name="NegativePrompts">Optional negative prompts, one per image; null uses the options' default.</param>
/// <param name="Overrides">Optional explicit t, Δt, ε.</param>
public sealed record DistillationInput(
    Tensor Images,
    IReadOnlyList<string> Prompts,
    CameraBatch Cameras,
    TrainingProgress Progress,
    IReadOnlyList<string>? NegativePrompts = null,
    DistillationOverrides? Overrides = null);

/// <summary>What one distillation step produced. The caller owns the tensors (they live in the caller's dispose scope).</summary>
public sealed class DistillationResult
{
    /// <summary>Creates a result.</summary>
    public DistillationResult(Tensor loss, Tensor gradient, DistillationDiagnostics diagnostics)
    {
        Loss = loss;
        Gradient = gradient;
        Diagnostics = diagnostics;
    }

    /// <summary>Scalar loss 0.5·‖z − sg(z − g)‖²/B whose gradient with respect to the latents z is g/B (the target trick).</summary>
    public Tensor Loss { get; }

    /// <summary>The detached score gradient g [B, C, h, w].</summary>
    public Tensor Gradient { get; }

    /// <summary>Scalars for logging and research.</summary>
    public DistillationDiagnostics Diagnostics { get; }
}

/// <summary>Diagnostics of one distillation step (host values; computing them costs one device sync).</summary>
/// <param name="Timesteps">t per sample.</param>
/// <param name="TimestepShifts">Δt per sample (ASD), zeros otherwise.</param>
/// <param name="GradientNorm">‖g‖₂ over the whole batch.</param>
/// <param name="NoiseResidual">Mean squared noise-prediction residual the gradient was built from (e.g. ‖ε̂_cfg − ε‖² for SDS).</param>
public sealed record DistillationDiagnostics(long[] Timesteps, long[] TimestepShifts, double GradientNorm, double NoiseResidual)
{
    /// <summary>Method-specific extras (e.g. VSD's ε_φ training loss); null when there are none.</summary>
    public IReadOnlyDictionary<string, double>? Extras { get; init; }
}

/// <summary>A score-distillation method: rendered images → a loss whose gradient pulls them toward the prior.</summary>
public interface IScoreDistiller
{
    /// <summary>Short name (SDS, CSD, VSD, ASD, ISM).</summary>
    string Name { get; }

    /// <summary>The frozen prior the distiller queries.</summary>
    IDiffusionPrior Prior { get; }

    /// <summary>Computes the distillation loss for a batch of rendered images.</summary>
    DistillationResult Distill(DistillationInput input);
}
