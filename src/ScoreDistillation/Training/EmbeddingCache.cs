using System.Security.Cryptography;
using System.Text;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Training;

/// <summary>
/// An on-disk cache of text embeddings keyed by (prior <see cref="IDiffusionPrior.ModelId"/>, prompt), so a large prompt
/// library is encoded once (the reference keeps <c>.threestudio_cache/text_embeddings</c>). One file per prompt, written
/// atomically; a damaged or mismatching file is treated as a miss and rewritten.
/// </summary>
public sealed class EmbeddingCache
{
    const int Magic = 0x45434453; // "SDCE"

    /// <summary>Creates a cache rooted at <paramref name="directory"/> (created on first write).</summary>
    public EmbeddingCache(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = directory;
    }

    /// <summary>The cache folder.</summary>
    public string Directory { get; }

    /// <summary>Number of lookups served from disk since creation.</summary>
    public int Hits { get; private set; }

    /// <summary>Number of prompts that had to be encoded since creation.</summary>
    public int Misses { get; private set; }

    /// <summary>The file that holds (model, prompt).</summary>
    public string PathFor(string modelId, string prompt)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(modelId + "\u0000" + prompt));
        return Path.Combine(Directory, Convert.ToHexString(hash, 0, 16).ToLowerInvariant() + ".emb");
    }

    /// <summary>
    /// Encodes <paramref name="prompts"/> with <paramref name="prior"/>, reading cached rows from disk and encoding only the
    /// missing prompts (in one batch). The result lives on the prior's device.
    /// </summary>
    public TextConditioning Encode(IDiffusionPrior prior, IReadOnlyList<string> prompts)
    {
        ArgumentNullException.ThrowIfNull(prior);
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("No prompts to encode.", nameof(prompts));
        using var scope = NewDisposeScope();
        var tokens = new Tensor?[prompts.Count];
        var pooled = new Tensor?[prompts.Count];
        var missing = new List<int>();
        for (int i = 0; i < prompts.Count; i++)
        {
            if (TryRead(prior.ModelId, prompts[i], out var tk, out var pl))
            {
                tokens[i] = tk;
                pooled[i] = pl;
                Hits++;
            }
            else missing.Add(i);
        }
        if (missing.Count > 0)
        {
            var unique = missing.Select(i => prompts[i]).Distinct().ToArray();
            using var enc = prior.EncodeText(unique);
            for (int u = 0; u < unique.Length; u++)
            {
                var tk = enc.Tokens[u];
                var pl = enc.Pooled[u];
                Write(prior.ModelId, unique[u], tk, pl);
                foreach (int i in missing.Where(i => prompts[i] == unique[u]))
                {
                    tokens[i] = tk;
                    pooled[i] = pl;
                }
            }
            Misses += unique.Length;
        }
        var tokensAll = stack(tokens.Select(t => t!.to(prior.Device)).ToArray()).MoveToOuterDisposeScope();
        var pooledAll = stack(pooled.Select(t => t!.to(prior.Device)).ToArray()).MoveToOuterDisposeScope();
        return new TextConditioning(prompts, tokensAll, pooledAll);
    }

    bool TryRead(string modelId, string prompt, out Tensor tokens, out Tensor pooled)
    {
        tokens = pooled = null!;
        var path = PathFor(modelId, prompt);
        if (!File.Exists(path)) return false;
        try
        {
            using var fs = File.OpenRead(path);
            using var r = new BinaryReader(fs, Encoding.UTF8);
            if (r.ReadInt32() != Magic) return false;
            if (r.ReadString() != modelId || r.ReadString() != prompt) return false;
            tokens = TensorIO.ReadTensor(r, path);
            pooled = TensorIO.ReadTensor(r, path);
            return true;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or EndOfStreamException or ArgumentException)
        {
            return false;
        }
    }

    void Write(string modelId, string prompt, Tensor tokens, Tensor pooled)
    {
        AtomicFile.Write(PathFor(modelId, prompt), s =>
        {
            using var w = new BinaryWriter(s, Encoding.UTF8, leaveOpen: true);
            w.Write(Magic);
            w.Write(modelId);
            w.Write(prompt);
            TensorIO.WriteTensor(w, tokens);
            TensorIO.WriteTensor(w, pooled);
        });
    }
}

/// <summary>An <see cref="IDiffusionPrior"/> that answers <see cref="EncodeText"/> from an <see cref="EmbeddingCache"/> and forwards everything else.</summary>
public sealed class CachedTextPrior : IDiffusionPrior
{
    readonly bool _ownsInner;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">The prior.</param>
    /// <param name="cache">The on-disk cache.</param>
    /// <param name="ownsInner">Dispose <paramref name="inner"/> with this wrapper.</param>
    public CachedTextPrior(IDiffusionPrior inner, EmbeddingCache cache, bool ownsInner = true)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        Cache = cache ?? throw new ArgumentNullException(nameof(cache));
        _ownsInner = ownsInner;
    }

    /// <summary>The wrapped prior.</summary>
    public IDiffusionPrior Inner { get; }

    /// <summary>The cache.</summary>
    public EmbeddingCache Cache { get; }

    /// <inheritdoc/>
    public string ModelId => Inner.ModelId;
    /// <inheritdoc/>
    public NoiseSchedule Schedule => Inner.Schedule;
    /// <inheritdoc/>
    public LatentShape LatentShape => Inner.LatentShape;
    /// <inheritdoc/>
    public int ImageSize => Inner.ImageSize;
    /// <inheritdoc/>
    public int ViewsPerSample => Inner.ViewsPerSample;
    /// <inheritdoc/>
    public bool UsesCameras => Inner.UsesCameras;
    /// <inheritdoc/>
    public Device Device => Inner.Device;
    /// <inheritdoc/>
    public TextConditioning EncodeText(IReadOnlyList<string> prompts) => Cache.Encode(Inner, prompts);
    /// <inheritdoc/>
    public Tensor EncodeImages(Tensor rgb, Generator? generator = null) => Inner.EncodeImages(rgb, generator);
    /// <inheritdoc/>
    public Tensor DecodeLatents(Tensor latents) => Inner.DecodeLatents(latents);
    /// <inheritdoc/>
    public Tensor PredictNoise(NoiseQuery query) => Inner.PredictNoise(query);
    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ownsInner) Inner.Dispose();
    }
}
