using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Distillers;

/// <summary>
/// A prior whose data are x₀ ~ N(μ_y, σ_y²I) per prompt, in pixel space (latents = RGB, identity encoder). Then
/// x_t ~ N(√ᾱ·μ, (ᾱσ² + 1 − ᾱ)I) and the exact noise prediction E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ·μ)/(ᾱσ² + 1 − ᾱ).
/// The text embedding of a prompt carries μ (token 0, flattened) and σ (token 1), so interpolated embeddings stay valid.
/// </summary>
public sealed class GaussianPrior : IDiffusionPrior
{
    readonly Dictionary<string, (double Mean, double Sigma, double Pattern)> _prompts = new(StringComparer.Ordinal);

    public GaussianPrior(int size = 4, int viewsPerSample = 1, double uncondSigma = 1.0)
    {
        Size = size;
        ViewsPerSample = viewsPerSample;
        Register("", 0.0, uncondSigma, 0);
    }

    public int Size { get; }
    public int PredictCalls { get; private set; }

    /// <summary>When set, the first element of every prediction is NaN (to test NaN handling).</summary>
    public bool InjectNaN { get; set; }
    public int PredictRows { get; private set; }
    public string ModelId => "gaussian";
    public NoiseSchedule Schedule { get; } = NoiseSchedule.ScaledLinear();
    public LatentShape LatentShape => new(3, Size, Size);
    public int ImageSize => Size;
    public int ViewsPerSample { get; }
    public bool UsesCameras => false;
    public Device Device => CPU;
    public int D => 3 * Size * Size;

    /// <summary>Registers prompt y with μ_y = mean·(1 + pattern·sin(i + 1)) and σ_y.</summary>
    public void Register(string prompt, double mean, double sigma, double pattern = 0.2) => _prompts[prompt] = (mean, sigma, pattern);

    /// <summary>μ and σ for a prompt: registered, or derived from its base prompt with a per-view offset.</summary>
    public (double[] Mu, double Sigma) Parameters(string prompt)
    {
        if (!_prompts.TryGetValue(prompt, out var p))
        {
            string[] suffixes = { ", side view", ", front view", ", back view", ", overhead view" };
            double[] offsets = { 0.00, 0.05, -0.05, 0.10 };
            int k = Array.FindIndex(suffixes, s => prompt.EndsWith(s, StringComparison.Ordinal));
            if (k >= 0 && _prompts.TryGetValue(prompt[..^suffixes[k].Length], out var bp)) p = (bp.Mean + offsets[k], bp.Sigma, bp.Pattern);
            else
            {
                int h = prompt.Aggregate(17, (a, c) => unchecked(a * 31 + c));
                p = (0.3 + 0.4 * ((h & 0xff) / 255.0), 0.2, 0.2);
            }
        }
        var mu = Enumerable.Range(0, D).Select(i => p.Mean * (1 + p.Pattern * Math.Sin(i + 1))).ToArray();
        return (mu, p.Sigma);
    }

    public TextConditioning EncodeText(IReadOnlyList<string> prompts)
    {
        var data = new float[prompts.Count * 2 * D];
        for (int i = 0; i < prompts.Count; i++)
        {
            var (mu, sigma) = Parameters(prompts[i]);
            for (int j = 0; j < D; j++)
            {
                data[(i * 2) * D + j] = (float)mu[j];
                data[(i * 2 + 1) * D + j] = (float)sigma;
            }
        }
        var tokens = tensor(data, new long[] { prompts.Count, 2, D });
        return new TextConditioning(prompts, tokens, tokens[TensorIndex.Colon, 0].clone());
    }

    public Tensor EncodeImages(Tensor rgb, Generator? generator = null) => rgb * 1.0;

    public Tensor DecodeLatents(Tensor latents) => latents.detach().clone();

    public Tensor PredictNoise(NoiseQuery query)
    {
        PredictCalls++;
        PredictRows += (int)query.NoisyLatents.shape[0];
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var x = query.NoisyLatents;
        long n = x.shape[0];
        var mu = query.Text[TensorIndex.Colon, 0].reshape(x.shape);
        var sigma = query.Text[TensorIndex.Colon, 1, 0].reshape(n, 1, 1, 1);
        var a = Schedule.AlphaBarAt(query.Timesteps, 4, x.dtype);
        var v = a * sigma.pow(2) + 1 - a;
        var eps = (1 - a).sqrt() * (x - a.sqrt() * mu) / v;
        if (InjectNaN) eps[0, 0, 0, 0] = float.NaN;
        return eps.MoveToOuterDisposeScope();
    }

    public void Dispose() { }
}
