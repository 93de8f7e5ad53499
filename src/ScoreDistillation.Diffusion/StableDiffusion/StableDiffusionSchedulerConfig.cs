using System.Text.Json.Serialization;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Priors;

namespace ScoreDistillation.Diffusion.StableDiffusion;

/// <summary>
/// The training-schedule part of a diffusers <c>scheduler/scheduler_config.json</c> (any scheduler class: PNDM, DDIM,
/// Euler…): the β schedule and the prediction type.
/// </summary>
public sealed record StableDiffusionSchedulerConfig
{
    /// <summary>Number of training timesteps T.</summary>
    [JsonPropertyName("num_train_timesteps")] public int NumTrainTimesteps { get; init; } = 1000;

    /// <summary>"scaled_linear" (SD) or "linear".</summary>
    [JsonPropertyName("beta_schedule")] public string BetaSchedule { get; init; } = "scaled_linear";

    /// <summary>β at t = 0.</summary>
    [JsonPropertyName("beta_start")] public double BetaStart { get; init; } = 0.00085;

    /// <summary>β at t = T − 1.</summary>
    [JsonPropertyName("beta_end")] public double BetaEnd { get; init; } = 0.012;

    /// <summary>"epsilon" or "v_prediction" (absent in old configs: epsilon).</summary>
    [JsonPropertyName("prediction_type")] public string PredictionTypeName { get; init; } = "epsilon";

    /// <summary>The parsed prediction type.</summary>
    /// <exception cref="NotSupportedException">Neither epsilon nor v_prediction.</exception>
    [JsonIgnore]
    public PredictionType PredictionType => PredictionTypeName switch
    {
        "epsilon" => PredictionType.Epsilon,
        "v_prediction" => PredictionType.VPrediction,
        _ => throw new NotSupportedException($"Scheduler prediction_type '{PredictionTypeName}' is not supported (supported: epsilon, v_prediction)."),
    };

    /// <summary>The forward process ᾱ_t.</summary>
    /// <exception cref="NotSupportedException">An unknown beta schedule.</exception>
    public NoiseSchedule ToNoiseSchedule() => BetaSchedule switch
    {
        "scaled_linear" => NoiseSchedule.ScaledLinear(NumTrainTimesteps, BetaStart, BetaEnd),
        "linear" => NoiseSchedule.Linear(NumTrainTimesteps, BetaStart, BetaEnd),
        _ => throw new NotSupportedException($"Scheduler beta_schedule '{BetaSchedule}' is not supported (supported: scaled_linear, linear)."),
    };

    /// <summary>Reads a <c>scheduler_config.json</c>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist (the message names the path).</exception>
    public static StableDiffusionSchedulerConfig FromFile(string path) => ConfigJson.Load<StableDiffusionSchedulerConfig>(path);

    /// <summary>Parses a <c>scheduler_config.json</c> text.</summary>
    public static StableDiffusionSchedulerConfig FromJson(string json) => ConfigJson.Parse<StableDiffusionSchedulerConfig>(json, "scheduler_config.json");
}
