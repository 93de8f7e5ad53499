using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>
/// ScaleDreamer's <c>LinearHyperNetwork</c>: Linear(c→n, no bias) → LayerNorm → SiLU → [Linear(n→n) → LayerNorm →
/// SiLU]×(h−1) → Linear(n→P), whose P outputs are cut into the weight matrices of bias-free per-prompt MLPs.
/// Xavier-normal (gain 1) weights, zero biases. State-dict keys <c>layers.{0,1,3}.*</c> as the reference.
/// </summary>
public sealed class LinearHyperNetwork : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field name is the state-dict key
    private readonly Sequential layers;
#pragma warning restore IDE1006

    private readonly (string Name, int[] Dims)[] _outputs;

    /// <summary>Creates the hypernetwork.</summary>
    /// <param name="conditionDims">Width c of the condition (pooled text embedding).</param>
    /// <param name="inputDims">Input width of the generated MLPs (the encoding width).</param>
    /// <param name="outputs">Generated MLPs in order: name and layer widths after the input, e.g. ("sdf_weights", [64, 1]).</param>
    /// <param name="neurons">Hidden width n.</param>
    /// <param name="hiddenLayers">Number of hidden layers h (1 in the reference ⇒ no extra hidden block).</param>
    /// <param name="generator">Random source of the initialisation.</param>
    public LinearHyperNetwork(int conditionDims, int inputDims, IReadOnlyList<(string Name, int[] Dims)> outputs,
        int neurons = 64, int hiddenLayers = 1, Generator? generator = null) : base(nameof(LinearHyperNetwork))
    {
        ArgumentNullException.ThrowIfNull(outputs);
        if (conditionDims < 1) throw new ArgumentOutOfRangeException(nameof(conditionDims));
        if (inputDims < 1) throw new ArgumentOutOfRangeException(nameof(inputDims));
        if (neurons < 1) throw new ArgumentOutOfRangeException(nameof(neurons));
        if (hiddenLayers < 1) throw new ArgumentOutOfRangeException(nameof(hiddenLayers), "The reference needs at least one hidden layer.");
        if (outputs.Count == 0) throw new ArgumentException("At least one generated MLP is needed.", nameof(outputs));
        _outputs = outputs.Select(o =>
        {
            if (o.Dims is null || o.Dims.Length == 0 || o.Dims.Any(d => d < 1))
                throw new ArgumentException($"Generated MLP '{o.Name}' needs positive layer widths.", nameof(outputs));
            return (o.Name, new[] { inputDims }.Concat(o.Dims).ToArray());
        }).ToArray();
        ConditionDims = conditionDims;
        OutputDims = _outputs.Sum(o => o.Dims.Zip(o.Dims.Skip(1), (a, b) => a * b).Sum());

        var modules = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("0", Init(nn.Linear(conditionDims, neurons, hasBias: false), generator)),
            ("1", nn.LayerNorm(neurons)),
            ("2", nn.SiLU()),
        };
        for (int i = 0; i < hiddenLayers - 1; i++)
        {
            modules.Add(($"{modules.Count}", Init(nn.Linear(neurons, neurons), generator)));
            modules.Add(($"{modules.Count}", nn.LayerNorm(neurons)));
            modules.Add(($"{modules.Count}", nn.SiLU()));
        }
        modules.Add(($"{modules.Count}", Init(nn.Linear(neurons, OutputDims), generator)));
        layers = nn.Sequential(modules);
        RegisterComponents();
    }

    /// <summary>Width of the condition.</summary>
    public int ConditionDims { get; }

    /// <summary>Number of generated values per prompt.</summary>
    public int OutputDims { get; }

    /// <summary>Raw generated values [B, P] for conditions [B, c].</summary>
    public override Tensor forward(Tensor condition)
    {
        ArgumentNullException.ThrowIfNull(condition);
        if (condition.dim() != 2 || condition.shape[1] != ConditionDims)
            throw new ArgumentException($"Hypernetwork condition must be [B, {ConditionDims}], got [{string.Join(", ", condition.shape)}].", nameof(condition));
        return layers.forward(condition);
    }

    /// <summary>The per-prompt weight matrices [B, in, out] of every generated MLP, by name, in layer order.</summary>
    public IReadOnlyDictionary<string, Tensor[]> Generate(Tensor condition)
    {
        using var scope = NewDisposeScope();
        var flat = forward(condition);
        long b = flat.shape[0];
        var result = new Dictionary<string, Tensor[]>();
        long start = 0;
        foreach (var (name, dims) in _outputs)
        {
            var mats = new Tensor[dims.Length - 1];
            for (int i = 0; i < mats.Length; i++)
            {
                long size = (long)dims[i] * dims[i + 1];
                mats[i] = flat.narrow(1, start, size).reshape(b, dims[i], dims[i + 1]).MoveToOuterDisposeScope();
                start += size;
            }
            result[name] = mats;
        }
        return result;
    }

    /// <summary>relu(…relu(x·W₁)·W₂…)·W_k per prompt, no biases: x [B, N, in] → [B, N, out].</summary>
    public static Tensor Apply(Tensor x, IReadOnlyList<Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weights);
        using var scope = NewDisposeScope();
        var h = x;
        for (int i = 0; i < weights.Count; i++)
        {
            h = bmm(h, weights[i]);
            if (i < weights.Count - 1) h = nn.functional.relu(h);
        }
        return h.MoveToOuterDisposeScope();
    }

    private static Linear Init(Linear linear, Generator? generator)
    {
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            var w = linear.weight!;
            double std = Math.Sqrt(2.0 / (w.shape[0] + w.shape[1]));
            w.copy_(randn(w.shape, w.dtype, generator: generator).mul_(std));
            linear.bias?.zero_();
        }
        return linear;
    }
}
