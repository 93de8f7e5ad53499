using ScoreDistillation.Rendering;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>Configuration of <see cref="TextConditionedHashGridBackground"/>; defaults are Hyper-iNGP's MG15 background.</summary>
public sealed record TextConditionedHashGridBackgroundOptions
{
    /// <summary>Hash grid over (d + 1)/2 (16 × 2, 2^19, base 16, per-level scale 1.0).</summary>
    public HashGridOptions Encoding { get; init; } = HashGridOptions.HyperInstantNgpBackground;

    /// <summary>Width of the pooled text embedding.</summary>
    public int TextDims { get; init; } = 1024;

    /// <summary>Hidden width of the hypernetwork and of the generated colour MLP.</summary>
    public int Neurons { get; init; } = 64;

    /// <summary>Hidden layers of the hypernetwork.</summary>
    public int HyperHiddenLayers { get; init; } = 1;

    /// <summary>
    /// Probability of replacing a prompt's whole background by one random colour during training (reference
    /// <c>random_aug_prob</c> 0.2). The background itself is deterministic; the renderer's augmentation applies this.
    /// </summary>
    public double RandomAugmentationProbability { get; init; } = 0.2;
}

/// <summary>
/// ScaleDreamer's <c>multiprompt-neural-hashgrid-environment-map-background</c>: colour = sigmoid(relu(enc·W₁)·W₂)
/// where enc is a hash grid of (d + 1)/2 and W₁ [32×64], W₂ [64×3] come per prompt from a hypernetwork on the pooled
/// text embedding. Keys <c>encoding.params</c>, <c>hypernet.layers.*</c>.
/// </summary>
public sealed class TextConditionedHashGridBackground : nn.Module, IBackground
{
#pragma warning disable IDE1006 // field names are the state-dict keys
    private readonly HashGridEncoding encoding;
    private readonly LinearHyperNetwork hypernet;
#pragma warning restore IDE1006

    /// <summary>Creates the background with the reference initialisation.</summary>
    public TextConditionedHashGridBackground(TextConditionedHashGridBackgroundOptions? options = null, Generator? generator = null)
        : base(nameof(TextConditionedHashGridBackground))
    {
        Options = options ?? new TextConditionedHashGridBackgroundOptions();
        encoding = new HashGridEncoding(Options.Encoding, generator);
        hypernet = new LinearHyperNetwork(Options.TextDims, encoding.OutputDims,
            new[] { ("bg_weights", new[] { Options.Neurons, 3 }) }, Options.Neurons, Options.HyperHiddenLayers, generator);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public TextConditionedHashGridBackgroundOptions Options { get; }

    /// <summary>The direction hash grid.</summary>
    public HashGridEncoding Encoding => encoding;

    /// <summary>The hypernetwork.</summary>
    public LinearHyperNetwork HyperNetwork => hypernet;

    /// <inheritdoc />
    public Tensor Evaluate(Tensor directions, Tensor? pooledText)
    {
        ArgumentNullException.ThrowIfNull(directions);
        if (pooledText is null) throw new ArgumentNullException(nameof(pooledText), "The text-conditioned background needs the pooled text embeddings [B, D].");
        if (directions.dim() != 3 || directions.shape[2] != 3)
            throw new ArgumentException($"Background directions must be [B, N, 3], got [{string.Join(", ", directions.shape)}].", nameof(directions));
        if (pooledText.dim() != 2 || pooledText.shape[0] != directions.shape[0])
            throw new ArgumentException($"Pooled text must be [{directions.shape[0]}, D], got [{string.Join(", ", pooledText.shape)}].", nameof(pooledText));
        using var scope = NewDisposeScope();
        long b = directions.shape[0], n = directions.shape[1];
        var weights = hypernet.Generate(pooledText)["bg_weights"];
        var enc = encoding.forward(directions.add(1.0).div_(2.0).reshape(-1, 3)).view(b, n, encoding.OutputDims);
        return LinearHyperNetwork.Apply(enc, weights).sigmoid_().MoveToOuterDisposeScope();
    }
}
