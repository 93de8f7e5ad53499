using ScoreDistillation.Distillers;

namespace ScoreDistillation.Priors;

/// <summary>
/// A scalar that anneals linearly over training, threestudio's <c>[start_step, start_value, end_value, end_step]</c>:
/// value = start + (end − start)·clip((step − start_step)/(end_step − start_step), 0, 1). A null
/// <see cref="EndStep"/> means "the last step of the run" (<see cref="TrainingProgress.TotalSteps"/>).
/// </summary>
/// <param name="StartValue">Value at and before <see cref="StartStep"/>.</param>
/// <param name="EndValue">Value at and after <see cref="EndStep"/>.</param>
/// <param name="StartStep">Step where the ramp begins.</param>
/// <param name="EndStep">Step where the ramp ends; null = the run's total steps.</param>
public sealed record ScalarSchedule(double StartValue, double EndValue, int StartStep = 0, int? EndStep = 0)
{
    /// <summary>A constant.</summary>
    public static ScalarSchedule Constant(double value) => new(value, value, 0, 0);

    /// <summary>The reference list form <c>[start_step, start_value, end_value, end_step]</c>.</summary>
    public static ScalarSchedule Linear(int startStep, double startValue, double endValue, int endStep) => new(startValue, endValue, startStep, endStep);

    /// <summary>A ramp from <paramref name="startValue"/> at step 0 to <paramref name="endValue"/> at the run's last step.</summary>
    public static ScalarSchedule OverRun(double startValue, double endValue) => new(startValue, endValue, 0, null);

    /// <summary>
    /// Parses threestudio's config forms: one value (constant), three values <c>[start_value, end_value, end_step]</c>
    /// (start_step 0) or four values <c>[start_step, start_value, end_value, end_step]</c>.
    /// </summary>
    public static ScalarSchedule FromList(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return values.Count switch
        {
            1 => Constant(values[0]),
            3 => Linear(0, values[0], values[1], (int)values[2]),
            4 => Linear((int)values[0], values[1], values[2], (int)values[3]),
            _ => throw new ArgumentException($"A scalar schedule has 1, 3 or 4 values, got {values.Count}.", nameof(values)),
        };
    }

    /// <summary>A constant schedule.</summary>
    public static implicit operator ScalarSchedule(double value) => Constant(value);

    /// <summary>True when the value never changes.</summary>
    public bool IsConstant => StartValue == EndValue;

    /// <summary>The value at <paramref name="progress"/>.</summary>
    public double ValueAt(TrainingProgress progress) => ValueAt(progress.Step, progress.TotalSteps);

    /// <summary>The value at global step <paramref name="step"/> of a run of <paramref name="totalSteps"/> steps.</summary>
    public double ValueAt(int step, int totalSteps)
    {
        if (IsConstant) return StartValue;
        int end = EndStep ?? totalSteps;
        double f;
        if (end <= StartStep) f = step >= end ? 1 : 0;
        else f = Math.Clamp((double)(step - StartStep) / (end - StartStep), 0, 1);
        if (f <= 0) return StartValue;
        if (f >= 1) return EndValue;
        return StartValue + (EndValue - StartValue) * f;
    }

    /// <inheritdoc />
    public override string ToString() => IsConstant ? StartValue.ToString(System.Globalization.CultureInfo.InvariantCulture)
        : $"[{StartStep}, {StartValue}, {EndValue}, {(EndStep is int e ? e.ToString(System.Globalization.CultureInfo.InvariantCulture) : "end")}]";
}
