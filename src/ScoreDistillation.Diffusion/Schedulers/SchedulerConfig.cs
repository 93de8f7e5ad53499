using System.Globalization;
using System.Text.Json;
using ScoreDistillation.Priors;

namespace ScoreDistillation.Diffusion.Schedulers;

/// <summary>
/// The fields of a diffusers <c>scheduler_config.json</c> that DDPM and DDIM use, with diffusers' defaults. Unknown keys are
/// ignored; unsupported values (thresholding, learned variances) are rejected when a scheduler is built.
/// </summary>
public sealed record SchedulerConfig
{
    /// <summary>num_train_timesteps (1000).</summary>
    public int NumTrainTimesteps { get; init; } = 1000;

    /// <summary>beta_start (0.0001).</summary>
    public double BetaStart { get; init; } = 0.0001;

    /// <summary>beta_end (0.02).</summary>
    public double BetaEnd { get; init; } = 0.02;

    /// <summary>beta_schedule: "linear", "scaled_linear" or "squaredcos_cap_v2".</summary>
    public string BetaSchedule { get; init; } = "linear";

    /// <summary>trained_betas: explicit β table, overriding the schedule.</summary>
    public IReadOnlyList<double>? TrainedBetas { get; init; }

    /// <summary>prediction_type.</summary>
    public PredictionType PredictionType { get; init; } = PredictionType.Epsilon;

    /// <summary>clip_sample (DDPM default true, DDIM default true; SD configs set false).</summary>
    public bool ClipSample { get; init; } = true;

    /// <summary>clip_sample_range (1).</summary>
    public double ClipSampleRange { get; init; } = 1.0;

    /// <summary>set_alpha_to_one (DDIM, true).</summary>
    public bool SetAlphaToOne { get; init; } = true;

    /// <summary>steps_offset (0; SD uses 1).</summary>
    public int StepsOffset { get; init; }

    /// <summary>timestep_spacing: "leading", "trailing" or "linspace".</summary>
    public string TimestepSpacing { get; init; } = "leading";

    /// <summary>variance_type (DDPM): "fixed_small", "fixed_small_log" or "fixed_large".</summary>
    public string VarianceType { get; init; } = "fixed_small";

    /// <summary>rescale_betas_zero_snr.</summary>
    public bool RescaleBetasZeroSnr { get; init; }

    /// <summary>thresholding (dynamic thresholding is not supported; true is rejected).</summary>
    public bool Thresholding { get; init; }

    /// <summary>Stable Diffusion 1.x/2.x: scaled_linear 0.00085 → 0.012, no clipping, steps_offset 1, set_alpha_to_one false.</summary>
    public static SchedulerConfig StableDiffusion(PredictionType predictionType = PredictionType.Epsilon) => new()
    {
        BetaStart = 0.00085, BetaEnd = 0.012, BetaSchedule = "scaled_linear", ClipSample = false, SetAlphaToOne = false,
        StepsOffset = 1, PredictionType = predictionType,
    };

    /// <summary>Reads a <c>scheduler_config.json</c> file.</summary>
    public static SchedulerConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Scheduler config not found: {path}", path);
        try { return Parse(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"Invalid scheduler config {path}: {e.Message}", e);
        }
    }

    /// <summary>Parses the JSON text of a scheduler config.</summary>
    public static SchedulerConfig Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        using var doc = JsonDocument.Parse(json);
        var r = doc.RootElement;
        if (r.ValueKind != JsonValueKind.Object) throw new FormatException("A scheduler config must be a JSON object.");
        var c = new SchedulerConfig();
        bool Has(string k, out JsonElement v) => r.TryGetProperty(k, out v) && v.ValueKind != JsonValueKind.Null;
        if (Has("num_train_timesteps", out var v)) c = c with { NumTrainTimesteps = v.GetInt32() };
        if (Has("beta_start", out v)) c = c with { BetaStart = v.GetDouble() };
        if (Has("beta_end", out v)) c = c with { BetaEnd = v.GetDouble() };
        if (Has("beta_schedule", out v)) c = c with { BetaSchedule = v.GetString()! };
        if (Has("trained_betas", out v)) c = c with { TrainedBetas = v.EnumerateArray().Select(e => e.GetDouble()).ToArray() };
        if (Has("prediction_type", out v)) c = c with { PredictionType = ParsePrediction(v.GetString()!) };
        if (Has("clip_sample", out v)) c = c with { ClipSample = v.GetBoolean() };
        if (Has("clip_sample_range", out v)) c = c with { ClipSampleRange = v.GetDouble() };
        if (Has("set_alpha_to_one", out v)) c = c with { SetAlphaToOne = v.GetBoolean() };
        if (Has("steps_offset", out v)) c = c with { StepsOffset = v.GetInt32() };
        if (Has("timestep_spacing", out v)) c = c with { TimestepSpacing = v.GetString()! };
        if (Has("variance_type", out v)) c = c with { VarianceType = v.GetString()! };
        if (Has("rescale_betas_zero_snr", out v)) c = c with { RescaleBetasZeroSnr = v.GetBoolean() };
        if (Has("thresholding", out v)) c = c with { Thresholding = v.GetBoolean() };
        return c;
    }

    /// <summary>diffusers' prediction_type string → <see cref="Priors.PredictionType"/>.</summary>
    public static PredictionType ParsePrediction(string value) => value switch
    {
        "epsilon" => PredictionType.Epsilon,
        "v_prediction" => PredictionType.VPrediction,
        "sample" => PredictionType.Sample,
        _ => throw new FormatException(string.Create(CultureInfo.InvariantCulture, $"Unknown prediction_type '{value}' (expected epsilon, v_prediction or sample).")),
    };
}
