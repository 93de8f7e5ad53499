using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Text;

/// <summary>
/// Prompts → CLIP text conditioning, as the Stable Diffusion and MVDream pipelines compute it: tokens padded to 77, token
/// embeddings = <c>last_hidden_state</c> (after the final LayerNorm), pooled = <c>pooler_output</c> (the EOS token). Frozen and
/// no-grad; results are kept in a bounded least-recently-used cache so repeated prompts cost nothing and memory stays flat
/// over 100k-prompt libraries.
/// </summary>
public sealed class ClipPromptEncoder : IDisposable
{
    readonly CLIPTextModel _model;
    readonly ClipTokenizer _tokenizer;
    readonly int _capacity;
    readonly Dictionary<string, LinkedListNode<(string Prompt, Tensor Tokens, Tensor Pooled)>> _index = new(StringComparer.Ordinal);
    readonly LinkedList<(string Prompt, Tensor Tokens, Tensor Pooled)> _lru = new();
    bool _disposed;

    /// <summary>Wraps a text model and tokenizer; takes ownership of the model.</summary>
    /// <param name="model">The frozen text encoder (any device and dtype).</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="cacheCapacity">Prompts kept in the cache (0 disables caching).</param>
    public ClipPromptEncoder(CLIPTextModel model, ClipTokenizer tokenizer, int cacheCapacity = 1024)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        if (cacheCapacity < 0) throw new ArgumentOutOfRangeException(nameof(cacheCapacity), cacheCapacity, "Cache capacity must be ≥ 0.");
        _capacity = cacheCapacity;
        _model.eval();
    }

    /// <summary>The text model.</summary>
    public CLIPTextModel Model => _model;

    /// <summary>The tokenizer.</summary>
    public ClipTokenizer Tokenizer => _tokenizer;

    /// <summary>Prompts currently cached.</summary>
    public int CachedCount => _index.Count;

    /// <summary>Encodes prompts ("" is the unconditional prompt). Result tensors are on the model's device in float32.</summary>
    public TextConditioning Encode(IReadOnlyList<string> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (prompts.Count == 0) throw new ArgumentException("Encode: the prompt list is empty.", nameof(prompts));
        using var scope = NewDisposeScope();
        var rows = new (Tensor Tokens, Tensor Pooled)[prompts.Count];
        var missing = new List<string>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var p = prompts[i] ?? throw new ArgumentException($"Encode: prompt {i} is null.", nameof(prompts));
            if (_index.TryGetValue(p, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                rows[i] = (node.Value.Tokens.alias(), node.Value.Pooled.alias()); // aliases survive eviction later in this call
            }
            else if (!missing.Contains(p)) missing.Add(p);
        }
        var fresh = new Dictionary<string, (Tensor Tokens, Tensor Pooled)>(StringComparer.Ordinal);
        if (missing.Count > 0)
        {
            using var _ = no_grad();
            var device = _model.parameters().First().device;
            var ids = _tokenizer.EncodeBatch(missing, device);
            using var output = _model.Encode(ids);
            for (int i = 0; i < missing.Count; i++)
            {
                var tokens = output.LastHiddenState[i].to(ScalarType.Float32).clone();
                var pooled = output.PoolerOutput[i].to(ScalarType.Float32).clone();
                fresh[missing[i]] = (tokens, pooled);
                Remember(missing[i], tokens, pooled);
            }
        }
        for (int i = 0; i < prompts.Count; i++)
            if (rows[i].Tokens is null) rows[i] = fresh[prompts[i]];
        var tok = stack(rows.Select(r => r.Tokens).ToArray());
        var pool = stack(rows.Select(r => r.Pooled).ToArray());
        return new TextConditioning(prompts, tok.MoveToOuterDisposeScope(), pool.MoveToOuterDisposeScope());
    }

    void Remember(string prompt, Tensor tokens, Tensor pooled)
    {
        if (_capacity == 0) return;
        // Cached tensors outlive the caller's scope: keep our own detached copies.
        var node = _lru.AddFirst((prompt, tokens.clone().DetachFromDisposeScope(), pooled.clone().DetachFromDisposeScope()));
        _index[prompt] = node;
        while (_lru.Count > _capacity)
        {
            var last = _lru.Last!;
            _lru.RemoveLast();
            _index.Remove(last.Value.Prompt);
            last.Value.Tokens.Dispose();
            last.Value.Pooled.Dispose();
        }
    }

    /// <summary>Empties the cache.</summary>
    public void ClearCache()
    {
        foreach (var (_, t, p) in _lru)
        {
            t.Dispose();
            p.Dispose();
        }
        _lru.Clear();
        _index.Clear();
    }

    /// <summary>Disposes the model and the cache.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ClearCache();
        _model.Dispose();
    }
}
