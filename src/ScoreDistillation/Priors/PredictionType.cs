namespace ScoreDistillation.Priors;

/// <summary>What a noise-prediction network outputs (diffusers' <c>prediction_type</c>).</summary>
public enum PredictionType
{
    /// <summary>The noise ε ("epsilon").</summary>
    Epsilon,

    /// <summary>The velocity v = √ᾱ·ε − √(1 − ᾱ)·x₀ ("v_prediction").</summary>
    VPrediction,

    /// <summary>The clean sample x₀ ("sample").</summary>
    Sample,
}
