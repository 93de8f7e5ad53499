using System.Text.Json;
using ScoreDistillation.Training;
using ScottPlot;

namespace ScoreDistillation.Outputs;

/// <summary>Writes the numbers of a run: <c>metrics.json</c> and a PNG plot of loss and gradient-norm curves (ScottPlot).</summary>
public static class TrainingReport
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Writes <paramref name="metrics"/> as indented JSON (atomically).</summary>
    public static void WriteMetrics(string path, IReadOnlyDictionary<string, object?> metrics)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(metrics, Indented));
    }

    /// <summary>
    /// Plots the loss (left axis) and the gradient norm (right axis) against the step and writes a PNG. Curves are
    /// smoothed with an exponential moving average (the raw values are noisy by construction: random t and cameras).
    /// </summary>
    public static void WriteCurves(string path, IReadOnlyList<TrainingStep> steps, double smoothing = 0.9, int width = 900, int height = 450)
    {
        ArgumentNullException.ThrowIfNull(steps);
        if (steps.Count == 0) throw new ArgumentException("No training steps to plot.", nameof(steps));
        var x = steps.Select(s => (double)s.Step).ToArray();
        var loss = Ema(steps.Select(s => s.Loss).ToArray(), smoothing);
        var grad = Ema(steps.Select(s => s.GradientNorm).ToArray(), smoothing);
        var plot = new Plot();
        var l = plot.Add.Scatter(x, loss);
        l.LegendText = "loss (EMA)";
        l.MarkerSize = 0;
        var g = plot.Add.Scatter(x, grad);
        g.LegendText = "‖∇θ‖ (EMA)";
        g.MarkerSize = 0;
        g.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Bottom.Label.Text = "step";
        plot.Axes.Left.Label.Text = "loss";
        plot.Axes.Right.Label.Text = "gradient norm";
        plot.ShowLegend();
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.png");
        plot.SavePng(tmp, width, height);
        File.Move(tmp, path, overwrite: true);
    }

    static double[] Ema(double[] v, double a)
    {
        var r = new double[v.Length];
        double m = double.NaN;
        for (int i = 0; i < v.Length; i++)
        {
            double x = double.IsFinite(v[i]) ? v[i] : (double.IsNaN(m) ? 0 : m);
            m = double.IsNaN(m) ? x : a * m + (1 - a) * x;
            r[i] = m;
        }
        return r;
    }
}
