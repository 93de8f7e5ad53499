namespace ScoreDistillation.Training;

/// <summary>What one optimizer step did (reported through <see cref="IProgress{T}"/>; host values).</summary>
/// <param name="Step">Completed optimizer steps after this one (1-based).</param>
/// <param name="TotalSteps">Planned steps.</param>
/// <param name="Loss">Total loss (distillation + weighted regularisers), averaged over micro-batches.</param>
/// <param name="DistillationLoss">The distiller's loss alone.</param>
/// <param name="GradientNorm">Global L2 norm of the parameter gradients before the update.</param>
/// <param name="Seconds">Wall time of the step.</param>
/// <param name="Prompts">Prompts of the step's micro-batches.</param>
/// <param name="Timesteps">Diffusion timesteps the distiller drew.</param>
public sealed record TrainingStep(int Step, int TotalSteps, double Loss, double DistillationLoss, double GradientNorm, double Seconds,
    IReadOnlyList<string> Prompts, IReadOnlyList<long> Timesteps)
{
    /// <summary>Weighted regulariser values by name (sparsity, opaque, eikonal, …).</summary>
    public IReadOnlyDictionary<string, double> Terms { get; init; } = new Dictionary<string, double>();

    /// <summary>Evaluation metrics when this step ran an evaluation (e.g. IoU), otherwise empty.</summary>
    public IReadOnlyDictionary<string, double> Evaluation { get; init; } = new Dictionary<string, double>();
}
