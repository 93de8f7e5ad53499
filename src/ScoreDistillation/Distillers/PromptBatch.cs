using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>The view directions of view-dependent prompting, in threestudio's order.</summary>
public enum ViewDirection
{
    /// <summary>Side (the default).</summary>
    Side = 0,

    /// <summary>Front.</summary>
    Front = 1,

    /// <summary>Back.</summary>
    Back = 2,

    /// <summary>Overhead.</summary>
    Overhead = 3,
}

/// <summary>
/// Per-row text embeddings for one distillation step, built with a single <see cref="IDiffusionPrior.EncodeText"/> call:
/// the (view-dependent, possibly Perp-Neg-interpolated) positive text, the plain prompt, the negative ("unconditional")
/// text, the null text "" and the Perp-Neg negatives and weights. Tensors belong to the caller's dispose scope.
/// </summary>
public sealed class PromptBatch
{
    PromptBatch(Tensor cond, Tensor plain, Tensor uncond, Tensor nul, Tensor[]? negatives, Tensor? weights, ViewDirection[] directions)
    {
        Cond = cond; Plain = plain; Uncond = uncond; Null = nul; PerpNegatives = negatives; PerpWeights = weights; Directions = directions;
    }

    /// <summary>Positive text [B, L, D]: view-dependent when enabled (interpolated between views with Perp-Neg).</summary>
    public Tensor Cond { get; }

    /// <summary>The prompt without a view suffix [B, L, D] (VSD's ε_φ text).</summary>
    public Tensor Plain { get; }

    /// <summary>The negative prompt's text [B, L, D], used as the unconditional branch.</summary>
    public Tensor Uncond { get; }

    /// <summary>The null text "" [B, L, D] (CSD's ε_null).</summary>
    public Tensor Null { get; }

    /// <summary>Perp-Neg negatives, two tensors [B, L, D]; null when Perp-Neg is off.</summary>
    public Tensor[]? PerpNegatives { get; }

    /// <summary>Perp-Neg weights [B, 2] (scaled by <see cref="PerpNegOptions.WeightScale"/>); null when Perp-Neg is off.</summary>
    public Tensor? PerpWeights { get; }

    /// <summary>The view direction chosen per row (Side when view-dependent prompting is off).</summary>
    public IReadOnlyList<ViewDirection> Directions { get; }

    /// <summary>True when Perp-Neg is active.</summary>
    public bool UsesPerpNeg => PerpNegatives is not null;

    /// <summary>shift(a) = (a + 180) mod 360 − 180, in (−180, 180].</summary>
    public static double ShiftAzimuth(double azimuthDeg) => ((azimuthDeg + 180) % 360 + 360) % 360 - 180;

    /// <summary>threestudio's direction rule (later rules win: front, back, overhead).</summary>
    public static ViewDirection Direction(double elevationDeg, double azimuthDeg, ViewDependentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        double a = Math.Abs(ShiftAzimuth(azimuthDeg));
        var d = ViewDirection.Side;
        if (a < options.FrontThreshold) d = ViewDirection.Front;
        if (a > 180 - options.BackThreshold) d = ViewDirection.Back;
        if (elevationDeg > options.OverheadThreshold) d = ViewDirection.Overhead;
        return d;
    }

    /// <summary>
    /// The Perp-Neg interpolation for one view (threestudio <c>get_text_embeddings_perp_neg</c>): positive = Σ coefficients·view
    /// embeddings, two negative views and their raw weights −f(r) (before <see cref="PerpNegOptions.WeightScale"/>).
    /// Overhead views get the overhead prompt, the negative prompt twice and zero weights (null negatives).
    /// </summary>
    public static (double Side, double Front, double Back, double Overhead, ViewDirection? Neg0, ViewDirection? Neg1, double W0, double W1)
        PerpNegTerms(double elevationDeg, double azimuthDeg, ViewDependentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var p = options.PerpNeg ?? throw new ArgumentException("Perp-Neg is not enabled.", nameof(options));
        if (elevationDeg > options.OverheadThreshold) return (0, 0, 0, 1, null, null, 0, 0);
        double azi = Math.Abs(ShiftAzimuth(azimuthDeg));
        if (azi < 90)
        {
            double r = 1 - azi / 90;
            return (1 - r, r, 0, 0, ViewDirection.Front, ViewDirection.Side,
                -GuidanceMath.ShiftedExponentialDecay(p.FrontSide, r), -GuidanceMath.ShiftedExponentialDecay(p.SideFront, 1 - r));
        }
        else
        {
            double r = 2 - azi / 90;
            return (r, 0, 1 - r, 0, ViewDirection.Side, ViewDirection.Front,
                -GuidanceMath.ShiftedExponentialDecay(p.SideBack, r), -GuidanceMath.ShiftedExponentialDecay(p.FrontSideBack, r));
        }
    }

    /// <summary>Builds the batch for <paramref name="prompts"/> (one per row) seen from <paramref name="cameras"/>.</summary>
    public static PromptBatch Build(IDiffusionPrior prior, IReadOnlyList<string> prompts, IReadOnlyList<string> negativePrompts,
        CameraBatch cameras, ViewDependentOptions? viewDependent, bool needNull)
    {
        ArgumentNullException.ThrowIfNull(prior);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(negativePrompts);
        ArgumentNullException.ThrowIfNull(cameras);
        int b = prompts.Count;
        double[] elev = Array.Empty<double>(), azim = Array.Empty<double>();
        if (viewDependent is not null)
        {
            using var e = cameras.Elevation.detach().to(ScalarType.Float64, CPU);
            using var a = cameras.Azimuth.detach().to(ScalarType.Float64, CPU);
            elev = e.data<double>().ToArray();
            azim = a.data<double>().ToArray();
        }

        var unique = new List<string>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        int Id(string s)
        {
            if (!index.TryGetValue(s, out int i)) { i = unique.Count; unique.Add(s); index[s] = i; }
            return i;
        }
        var plainIds = prompts.Select(Id).ToArray();
        var uncondIds = negativePrompts.Select(Id).ToArray();
        int nullId = needNull ? Id("") : -1;
        var directions = new ViewDirection[b];
        // Row coefficients over the unique prompts: positive and the two Perp-Neg negatives.
        var condCoef = new double[b][];
        var neg0 = new int[b];
        var neg1 = new int[b];
        var w = new double[b * 2];
        bool perp = viewDependent?.PerpNeg is not null;
        var vdIds = new int[b][];
        for (int i = 0; i < b; i++)
        {
            if (viewDependent is null) { vdIds[i] = Array.Empty<int>(); continue; }
            vdIds[i] = viewDependent.Suffixes.Select(s => Id(prompts[i] + s)).ToArray();
            directions[i] = Direction(elev[i], azim[i], viewDependent);
        }
        using var scope = NewDisposeScope();
        TextConditioning enc = prior.EncodeText(unique);
        Tensor tokens;
        try
        {
            if (enc.Count != unique.Count)
                throw new InvalidOperationException($"The prior encoded {enc.Count} prompts for {unique.Count} requested.");
            tokens = enc.Tokens.detach().clone();
        }
        finally { enc.Dispose(); }
        var dev = tokens.device;
        Tensor Rows(IEnumerable<int> ids)
        {
            using var idx = tensor(ids.Select(v => (long)v).ToArray(), ScalarType.Int64, dev);
            return tokens.index_select(0, idx);
        }

        Tensor cond;
        Tensor[]? negatives = null;
        Tensor? weights = null;
        if (viewDependent is null) cond = Rows(plainIds);
        else if (!perp) cond = Rows(Enumerable.Range(0, b).Select(i => vdIds[i][(int)directions[i]]));
        else
        {
            double scale = viewDependent.PerpNeg!.WeightScale;
            var coef = zeros(new long[] { b, unique.Count }, ScalarType.Float64);
            for (int i = 0; i < b; i++)
            {
                var t = PerpNegTerms(elev[i], azim[i], viewDependent);
                condCoef[i] = new[] { t.Side, t.Front, t.Back, t.Overhead };
                for (int k = 0; k < 4; k++)
                    if (condCoef[i][k] != 0) coef[i, vdIds[i][k]] += condCoef[i][k];
                neg0[i] = t.Neg0 is ViewDirection n0 ? vdIds[i][(int)n0] : uncondIds[i];
                neg1[i] = t.Neg1 is ViewDirection n1 ? vdIds[i][(int)n1] : uncondIds[i];
                w[2 * i] = t.W0 * scale;
                w[2 * i + 1] = t.W1 * scale;
            }
            var flat = tokens.flatten(1);
            cond = coef.to(flat.dtype, dev).matmul(flat).reshape(b, tokens.shape[1], tokens.shape[2]);
            negatives = new[] { Rows(neg0), Rows(neg1) };
            weights = tensor(w, ScalarType.Float32, dev).reshape(b, 2);
        }
        var batch = new PromptBatch(cond, Rows(plainIds), Rows(uncondIds), needNull ? Rows(Enumerable.Repeat(nullId, b)) : Rows(uncondIds),
            negatives, weights, directions);
        batch.Cond.MoveToOuterDisposeScope();
        batch.Plain.MoveToOuterDisposeScope();
        batch.Uncond.MoveToOuterDisposeScope();
        batch.Null.MoveToOuterDisposeScope();
        if (negatives is not null) foreach (var n in negatives) n.MoveToOuterDisposeScope();
        weights?.MoveToOuterDisposeScope();
        return batch;
    }
}
