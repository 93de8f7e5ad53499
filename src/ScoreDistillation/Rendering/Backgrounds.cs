using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Rendering;

/// <summary>A constant background colour (threestudio <c>solid-color-background</c>).</summary>
public sealed class SolidColorBackground : IBackground
{
    readonly double _r, _g, _b;

    /// <summary>Creates a background of colour (r, g, b) in [0, 1] (default white).</summary>
    public SolidColorBackground(double r = 1, double g = 1, double b = 1)
    {
        foreach (var c in new[] { r, g, b })
            if (c is < 0 or > 1 || double.IsNaN(c)) throw new ArgumentOutOfRangeException(nameof(r), c, "Colour components must lie in [0, 1].");
        (_r, _g, _b) = (r, g, b);
    }

    /// <summary>The colour.</summary>
    public (double R, double G, double B) Color => (_r, _g, _b);

    /// <inheritdoc />
    public Tensor Evaluate(Tensor directions, Tensor? pooledText)
    {
        ArgumentNullException.ThrowIfNull(directions);
        using var scope = NewDisposeScope();
        var c = tensor(new[] { _r, _g, _b }, dtype: directions.dtype, device: directions.device);
        var shape = directions.shape;
        return c.expand(shape).contiguous().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// threestudio <c>neural-environment-map-background</c> default: SH degree-3 encoding of the ray direction (9 values)
/// → VanillaMLP 9→16→16→3 (ReLU, no biases) → sigmoid (or sigmoid-mipnerf). Not text-conditioned. State-dict keys
/// <c>network.layers.{0,2,4}.weight</c> as the reference.
/// </summary>
public sealed class NeuralEnvironmentBackground : nn.Module<Tensor, Tensor>, IBackground
{
#pragma warning disable IDE1006 // field names are the upstream state-dict keys
    private readonly VanillaMlp network;
#pragma warning restore IDE1006
    readonly MaterialActivation _activation;

    /// <summary>Creates the background; weights drawn from <paramref name="generator"/> with PyTorch's default Linear init U(±1/√fan_in).</summary>
    /// <param name="generator">Initialisation randomness.</param>
    /// <param name="hidden">Hidden width (16).</param>
    /// <param name="hiddenLayers">Hidden layers (2).</param>
    /// <param name="activation">Colour activation.</param>
    public NeuralEnvironmentBackground(Generator generator, int hidden = 16, int hiddenLayers = 2, MaterialActivation activation = MaterialActivation.Sigmoid)
        : base(nameof(NeuralEnvironmentBackground))
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (hidden < 1 || hiddenLayers < 1) throw new ArgumentOutOfRangeException(nameof(hidden), $"Need hidden ≥ 1 and hiddenLayers ≥ 1, got {hidden}, {hiddenLayers}.");
        network = new VanillaMlp(SphericalHarmonicsEncoding.OutputDimension(3), hidden, hiddenLayers, 3, generator);
        _activation = activation;
        RegisterComponents();
    }

    /// <summary>RGB in [0, 1] for unit directions [..., 3].</summary>
    public override Tensor forward(Tensor directions)
    {
        using var scope = NewDisposeScope();
        var enc = SphericalHarmonicsEncoding.Encode(directions, 3);
        var c = network.forward(enc).sigmoid();
        if (_activation == MaterialActivation.SigmoidMipNerf) c = c * 1.002 - 0.001;
        return c.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor Evaluate(Tensor directions, Tensor? pooledText) => forward(directions);
}

/// <summary>threestudio VanillaMLP: bias-free Linear layers with ReLU between them, in a <c>layers</c> Sequential.</summary>
internal sealed class VanillaMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Sequential layers;
#pragma warning restore IDE1006

    public VanillaMlp(int input, int hidden, int hiddenLayers, int output, Generator generator) : base(nameof(VanillaMlp))
    {
        var mods = new List<(string, nn.Module<Tensor, Tensor>)>();
        int idx = 0;
        int fan = input;
        for (int i = 0; i < hiddenLayers; i++)
        {
            mods.Add(((idx++).ToString(System.Globalization.CultureInfo.InvariantCulture), MakeLinear(fan, hidden, generator)));
            mods.Add(((idx++).ToString(System.Globalization.CultureInfo.InvariantCulture), nn.ReLU()));
            fan = hidden;
        }
        mods.Add(((idx).ToString(System.Globalization.CultureInfo.InvariantCulture), MakeLinear(fan, output, generator)));
        layers = nn.Sequential(mods);
        RegisterComponents();
    }

    static Linear MakeLinear(int input, int output, Generator generator)
    {
        var lin = nn.Linear(input, output, hasBias: false);
        using (no_grad())
        {
            double bound = 1.0 / Math.Sqrt(input);
            using var u = rand(new long[] { output, input }, generator: generator) * (2 * bound) - bound;
            lin.weight!.copy_(u);
        }
        return lin;
    }

    public override Tensor forward(Tensor x) => layers.forward(x);
}

/// <summary>
/// threestudio's <c>random_aug</c>: while <see cref="Training"/>, with probability <see cref="Probability"/> per render
/// (one coin per batch, as the reference) the whole background is replaced by one random RGB colour per prompt.
/// Draws from its own generator without host synchronisation.
/// </summary>
public sealed class RandomSolidColorBackground : IBackground
{
    readonly IBackground _inner;
    readonly Generator _generator;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">The background used when the coin says no.</param>
    /// <param name="probability">Replacement probability (0.5 threestudio default; 0.2 Hyper-iNGP).</param>
    /// <param name="generator">Coin and colour randomness (on the device the directions live on).</param>
    public RandomSolidColorBackground(IBackground inner, double probability, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(generator);
        if (probability is < 0 or > 1 || double.IsNaN(probability)) throw new ArgumentOutOfRangeException(nameof(probability), probability, "Probability must lie in [0, 1].");
        _inner = inner;
        _generator = generator;
        Probability = probability;
    }

    /// <summary>Replacement probability.</summary>
    public double Probability { get; }

    /// <summary>Augment only while true (set false for evaluation renders).</summary>
    public bool Training { get; set; } = true;

    /// <summary>The wrapped background.</summary>
    public IBackground Inner => _inner;

    /// <inheritdoc />
    public Tensor Evaluate(Tensor directions, Tensor? pooledText)
    {
        ArgumentNullException.ThrowIfNull(directions);
        var bg = _inner.Evaluate(directions, pooledText);
        if (!Training || Probability <= 0) return bg;
        using var scope = NewDisposeScope();
        long b = directions.shape[0];
        var coin = rand(new long[] { 1 }, dtype: directions.dtype, device: directions.device, generator: _generator) < Probability;
        var colourShape = new long[directions.dim()];
        Array.Fill(colourShape, 1L);
        colourShape[0] = b;
        colourShape[^1] = 3;
        var colour = rand(colourShape, dtype: directions.dtype, device: directions.device, generator: _generator).expand(bg.shape);
        var result = where(coin, colour, bg);
        bg.Dispose();
        return result.MoveToOuterDisposeScope();
    }
}
