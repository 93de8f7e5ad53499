using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>One point of the noise-prediction-error curve.</summary>
/// <param name="Timestep">t.</param>
/// <param name="MeanSquaredError">E‖ε̂(x_t; t, y) − ε‖² per element, averaged over the batch and the draws.</param>
/// <param name="StdError">Standard error of that mean over the per-sample values.</param>
public readonly record struct NoisePredictionErrorPoint(int Timestep, double MeanSquaredError, double StdError);

/// <summary>
/// The diagnostic ScaleDreamer builds on: E‖ε̂(x_t; t, y) − ε‖² as a function of t for a batch of images (renders or real
/// photos). A low error at t means the prior already "explains" the images there; ASD's shift to t + Δt exploits its growth.
/// </summary>
public static class NoisePredictionError
{
    /// <summary>Evenly spaced t grid from <paramref name="first"/> to <paramref name="last"/> (inclusive) with <paramref name="count"/> points.</summary>
    public static int[] Grid(int first = 20, int last = 980, int count = 25)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        if (count == 1) return new[] { first };
        return Enumerable.Range(0, count).Select(i => (int)Math.Round(first + (last - first) * (double)i / (count - 1))).ToArray();
    }

    /// <summary>
    /// Measures the curve for <paramref name="images"/> [B, 3, H, W] in [0, 1] with one prompt per image, over
    /// <paramref name="timesteps"/>, drawing <paramref name="draws"/> noises per t. One prior call per (t, draw).
    /// </summary>
    public static IReadOnlyList<NoisePredictionErrorPoint> Measure(IDiffusionPrior prior, Tensor images, IReadOnlyList<string> prompts,
        IReadOnlyList<int> timesteps, Generator generator, int draws = 1, Tensor? cameraToWorld = null)
    {
        ArgumentNullException.ThrowIfNull(prior);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(timesteps);
        ArgumentNullException.ThrowIfNull(generator);
        if (images.dim() != 4 || images.shape[1] != 3) throw new ArgumentException($"Images must be [B, 3, H, W], got [{string.Join(", ", images.shape)}].", nameof(images));
        if (prompts.Count != images.shape[0]) throw new ArgumentException($"Batch size mismatch: {images.shape[0]} images but {prompts.Count} prompts.", nameof(prompts));
        if (draws < 1) throw new ArgumentOutOfRangeException(nameof(draws));
        int T = prior.Schedule.NumTimesteps;
        foreach (int t in timesteps)
            if (t < 0 || t >= T) throw new ArgumentOutOfRangeException(nameof(timesteps), t, $"Timesteps must be in [0, {T - 1}].");
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var z = prior.EncodeImages(images.detach(), generator);
        int b = (int)z.shape[0];
        var enc = prior.EncodeText(prompts);
        Tensor text;
        try { text = enc.Tokens.detach().clone(); } finally { enc.Dispose(); }
        Tensor? cams = prior.UsesCameras ? cameraToWorld?.to(z.dtype, z.device) : null;
        var perT = new List<Tensor>();
        foreach (int t in timesteps)
        {
            var tt = full(new long[] { b }, t, ScalarType.Int64, z.device);
            var acc = zeros(new long[] { b }, ScalarType.Float64, z.device);
            for (int d = 0; d < draws; d++)
            {
                var eps = randn(z.shape, z.dtype, generator.device, generator: generator).to(z.device);
                var xt = prior.Schedule.AddNoise(z, eps, tt);
                var pred = prior.PredictNoise(new NoiseQuery(xt, tt, text, cams));
                acc = acc + (pred - eps).pow(2).flatten(1).mean(new long[] { 1 }).to(ScalarType.Float64);
            }
            perT.Add(acc / draws);
        }
        using var all = stack(perT.ToArray()).cpu();
        var values = all.data<double>().ToArray();
        var result = new NoisePredictionErrorPoint[timesteps.Count];
        for (int i = 0; i < timesteps.Count; i++)
        {
            var row = values.Skip(i * b).Take(b).ToArray();
            double mean = row.Average();
            double sd = b > 1 ? Math.Sqrt(row.Sum(v => (v - mean) * (v - mean)) / (b - 1)) : 0;
            result[i] = new NoisePredictionErrorPoint(timesteps[i], mean, sd / Math.Sqrt(b));
        }
        return result;
    }
}
