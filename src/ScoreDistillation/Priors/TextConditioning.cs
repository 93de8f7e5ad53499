using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Priors;

/// <summary>
/// Text conditioning for a batch of prompts: per-token embeddings [B, L, D] (what a UNet cross-attends to) and pooled
/// embeddings [B, D] (what amortized generators condition on). Owns its tensors; dispose it when done.
/// </summary>
public sealed class TextConditioning : IDisposable
{
    /// <summary>Creates a conditioning; takes ownership of the tensors.</summary>
    public TextConditioning(IReadOnlyList<string> prompts, Tensor tokens, Tensor pooled)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(pooled);
        if (tokens.dim() != 3) throw new ArgumentException($"Token embeddings must be [B, L, D], got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        if (pooled.dim() != 2) throw new ArgumentException($"Pooled embeddings must be [B, D], got [{string.Join(", ", pooled.shape)}].", nameof(pooled));
        if (tokens.shape[0] != prompts.Count || pooled.shape[0] != prompts.Count)
            throw new ArgumentException($"Batch mismatch: {prompts.Count} prompts, tokens [{string.Join(", ", tokens.shape)}], pooled [{string.Join(", ", pooled.shape)}].");
        Prompts = prompts.ToArray();
        Tokens = tokens;
        Pooled = pooled;
    }

    /// <summary>The prompts, one per batch row ("" is unconditional).</summary>
    public IReadOnlyList<string> Prompts { get; }

    /// <summary>Token embeddings [B, L, D].</summary>
    public Tensor Tokens { get; }

    /// <summary>Pooled embeddings [B, D].</summary>
    public Tensor Pooled { get; }

    /// <summary>Batch size B.</summary>
    public int Count => Prompts.Count;

    /// <summary>Concatenates along the batch (new tensors).</summary>
    public static TextConditioning Concat(params TextConditioning[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Length == 0) throw new ArgumentException("Nothing to concatenate.", nameof(parts));
        return new TextConditioning(
            parts.SelectMany(p => p.Prompts).ToArray(),
            cat(parts.Select(p => p.Tokens).ToArray(), 0),
            cat(parts.Select(p => p.Pooled).ToArray(), 0));
    }

    /// <summary>Rows at <paramref name="indices"/> (new tensors).</summary>
    public TextConditioning Select(IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        foreach (int i in indices)
            if ((uint)i >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"Row index outside [0, {Count}).");
        using var idx = tensor(indices.Select(i => (long)i).ToArray(), ScalarType.Int64, Tokens.device);
        return new TextConditioning(indices.Select(i => Prompts[i]).ToArray(), Tokens.index_select(0, idx), Pooled.index_select(0, idx));
    }

    /// <summary>Each row repeated <paramref name="times"/> times consecutively (a, a, b, b …), as multi-view priors lay out views.</summary>
    public TextConditioning RepeatInterleave(int times)
    {
        if (times < 1) throw new ArgumentOutOfRangeException(nameof(times));
        var idx = Enumerable.Range(0, Count).SelectMany(i => Enumerable.Repeat(i, times)).ToArray();
        return Select(idx);
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Tokens.Dispose();
        Pooled.Dispose();
    }
}
