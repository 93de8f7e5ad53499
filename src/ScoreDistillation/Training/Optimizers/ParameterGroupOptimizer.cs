using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Training.Optimizers;

/// <summary>A named set of parameters sharing one learning rate (e.g. "generator", "background", "particle").</summary>
/// <param name="Name">Group name; also the key prefix of the group's state in checkpoints.</param>
/// <param name="Parameters">The parameters.</param>
/// <param name="LearningRate">Learning rate of the group.</param>
/// <param name="WeightDecay">Weight decay of the group (decoupled for Adam, proximal for Adan).</param>
public sealed record ParameterGroup(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate, double WeightDecay = 0);

/// <summary>
/// An optimizer over named parameter groups whose whole state (moments, step counts) is exposed as named tensors, so
/// checkpoints hold it exactly. Gradients are read from <c>Parameter.grad</c>; parameters without a gradient are skipped.
/// </summary>
public abstract class ParameterGroupOptimizer : IDisposable
{
    readonly List<ParameterGroup> _groups;

    /// <summary>Creates the optimizer.</summary>
    protected ParameterGroupOptimizer(IEnumerable<ParameterGroup> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        _groups = groups.ToList();
        if (_groups.Count == 0) throw new ArgumentException("An optimizer needs at least one parameter group.", nameof(groups));
        var dup = _groups.GroupBy(g => g.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Parameter group '{dup.Key}' appears twice.", nameof(groups));
        foreach (var g in _groups)
            if (!(g.LearningRate >= 0)) throw new ArgumentException($"Group '{g.Name}' has an invalid learning rate {g.LearningRate}.", nameof(groups));
    }

    /// <summary>The groups.</summary>
    public IReadOnlyList<ParameterGroup> Groups => _groups;

    /// <summary>Number of steps taken per group name.</summary>
    protected Dictionary<string, long> Steps { get; } = new();

    /// <summary>Short name, e.g. "Adam".</summary>
    public abstract string Name { get; }

    /// <summary>Changes the learning rate of a group (for schedules).</summary>
    public void SetLearningRate(string group, double learningRate)
    {
        int i = _groups.FindIndex(g => g.Name == group);
        if (i < 0) throw new ArgumentException($"No parameter group '{group}'. Groups: {string.Join(", ", _groups.Select(g => g.Name))}.", nameof(group));
        _groups[i] = _groups[i] with { LearningRate = learningRate };
    }

    /// <summary>Sets every gradient to null.</summary>
    public void ZeroGrad()
    {
        foreach (var g in _groups)
            foreach (var p in g.Parameters)
            {
                var grad = p.grad;
                if (grad is not null) { grad.Dispose(); p.grad = null; }
            }
    }

    /// <summary>Global L2 norm of all current gradients (one host sync).</summary>
    public double GradientNorm()
    {
        using var scope = NewDisposeScope();
        Tensor? total = null;
        foreach (var g in _groups)
            foreach (var p in g.Parameters)
            {
                var grad = p.grad;
                if (grad is null) continue;
                var s = grad.detach().to(ScalarType.Float64).square().sum();
                total = total is null ? s : total + s;
            }
        return total is null ? 0 : Math.Sqrt(total.item<double>());
    }

    /// <summary>Multiplies every gradient by <paramref name="factor"/> (e.g. 1/k for k accumulated micro-batches).</summary>
    public void ScaleGradients(double factor)
    {
        using var noGrad = no_grad();
        foreach (var g in _groups)
            foreach (var p in g.Parameters)
                p.grad?.mul_(factor);
    }

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public void Step()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var g in _groups)
        {
            long step = Steps.GetValueOrDefault(g.Name) + 1;
            Steps[g.Name] = step;
            for (int i = 0; i < g.Parameters.Count; i++)
            {
                var p = g.Parameters[i];
                var grad = p.grad;
                if (grad is null) continue;
                UpdateParameter(g, i, p, grad, step);
            }
        }
    }

    /// <summary>Updates one parameter in place (called under no_grad inside a dispose scope).</summary>
    /// <param name="group">Its group.</param>
    /// <param name="index">Index inside the group.</param>
    /// <param name="parameter">The parameter.</param>
    /// <param name="grad">Its gradient.</param>
    /// <param name="step">1-based step count of the group.</param>
    protected abstract void UpdateParameter(ParameterGroup group, int index, Parameter parameter, Tensor grad, long step);

    /// <summary>Per-parameter state tensors, created on first use. Keys are "<c>group/index/slot</c>".</summary>
    protected Dictionary<string, Tensor> State { get; } = new();

    /// <summary>Gets or creates a zero state tensor shaped like <paramref name="like"/>.</summary>
    protected Tensor GetState(ParameterGroup group, int index, string slot, Tensor like, Func<Tensor>? init = null)
    {
        var key = $"{group.Name}/{index}/{slot}";
        if (!State.TryGetValue(key, out var t))
        {
            t = (init?.Invoke() ?? zeros_like(like)).detach().DetachFromDisposeScope();
            State[key] = t;
        }
        return t;
    }

    /// <summary>Everything needed to resume: state tensors plus step counters (as int64 scalars).</summary>
    public IReadOnlyList<(string Name, Tensor Value)> StateTensors()
    {
        var list = State.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ToList();
        foreach (var (name, step) in Steps.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            list.Add(($"{name}/step", tensor(step)));
        return list;
    }

    /// <summary>Restores state written by <see cref="StateTensors"/>; tensors are copied onto the parameters' devices.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        foreach (var t in State.Values) t.Dispose();
        State.Clear();
        Steps.Clear();
        foreach (var (key, value) in state)
        {
            if (key.EndsWith("/step", StringComparison.Ordinal))
            {
                var name = key[..^5];
                if (_groups.All(g => g.Name != name)) throw new InvalidDataException($"Optimizer state has a step for unknown group '{name}'.");
                Steps[name] = value.to(ScalarType.Int64).item<long>();
                continue;
            }
            var parts = key.Split('/');
            if (parts.Length != 3 || !int.TryParse(parts[1], out int idx))
                throw new InvalidDataException($"Optimizer state key '{key}' is not 'group/index/slot'.");
            var group = _groups.FirstOrDefault(g => g.Name == parts[0])
                ?? throw new InvalidDataException($"Optimizer state refers to unknown group '{parts[0]}'.");
            if ((uint)idx >= (uint)group.Parameters.Count)
                throw new InvalidDataException($"Optimizer state '{key}': group '{group.Name}' has only {group.Parameters.Count} parameters.");
            var p = group.Parameters[idx];
            if (!value.shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"Optimizer state '{key}' has shape [{string.Join(", ", value.shape)}] but the parameter is [{string.Join(", ", p.shape)}].");
            State[key] = value.to(p.dtype, p.device).clone().DetachFromDisposeScope();
        }
    }

    /// <summary>Disposes the state tensors.</summary>
    public void Dispose()
    {
        foreach (var t in State.Values) t.Dispose();
        State.Clear();
        GC.SuppressFinalize(this);
    }
}
