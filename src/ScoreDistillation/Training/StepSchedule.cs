using System.Globalization;

namespace ScoreDistillation.Training;

/// <summary>
/// threestudio's scalar schedule <c>[start_step, start_value, end_value, end_step]</c>: constant <see cref="StartValue"/>
/// until <see cref="StartStep"/>, linear to <see cref="EndValue"/> at <see cref="EndStep"/>, constant after. A constant is
/// the degenerate case.
/// </summary>
/// <param name="StartStep">Step where the ramp begins.</param>
/// <param name="StartValue">Value until then.</param>
/// <param name="EndValue">Value from <see cref="EndStep"/> on.</param>
/// <param name="EndStep">Step where the ramp ends.</param>
public readonly record struct StepSchedule(long StartStep, double StartValue, double EndValue, long EndStep)
{
    /// <summary>A constant.</summary>
    public static StepSchedule Constant(double value) => new(0, value, value, 0);

    /// <summary>Implicit constant.</summary>
    public static implicit operator StepSchedule(double value) => Constant(value);

    /// <summary>The value at <paramref name="step"/>.</summary>
    public double At(long step)
    {
        if (EndStep <= StartStep) return step >= EndStep ? EndValue : StartValue;
        double f = Math.Clamp((double)(step - StartStep) / (EndStep - StartStep), 0, 1);
        return StartValue + (EndValue - StartValue) * f;
    }

    /// <summary>The same schedule with its steps multiplied by <paramref name="factor"/> (to shrink a 50k-step recipe to a short run).</summary>
    public StepSchedule Rescale(double factor) => new((long)Math.Round(StartStep * factor), StartValue, EndValue, (long)Math.Round(EndStep * factor));

    /// <inheritdoc/>
    public override string ToString() => StartValue == EndValue
        ? StartValue.ToString("R", CultureInfo.InvariantCulture)
        : string.Create(CultureInfo.InvariantCulture, $"[{StartStep}, {StartValue:R}→{EndValue:R}, {EndStep}]");
}
