using FluentAssertions;
using ScoreDistillation.Priors;
using ScoreDistillation.Tests.Infrastructure;
using ScoreDistillation.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

/// <summary>A prior whose text encoder is a deterministic function of the prompt and counts its calls.</summary>
sealed class CountingTextPrior : IDiffusionPrior
{
    public int EncodedPrompts;
    public string ModelId { get; init; } = "counting-v1";
    public NoiseSchedule Schedule { get; } = NoiseSchedule.ScaledLinear();
    public LatentShape LatentShape => new(3, 8, 8);
    public int ImageSize => 8;
    public int ViewsPerSample => 1;
    public bool UsesCameras => false;
    public Device Device => CPU;

    public TextConditioning EncodeText(IReadOnlyList<string> prompts)
    {
        EncodedPrompts += prompts.Count;
        var rows = prompts.Select(p => (float)p.Aggregate(7, (h, c) => h * 31 + c % 1000) % 97).ToArray();
        using var v = tensor(rows);
        var tokens = v.reshape(-1, 1, 1).expand(-1, 4, 6).add(arange(6).to(ScalarType.Float32)).contiguous();
        var pooled = v.reshape(-1, 1).expand(-1, 6).mul(0.5).contiguous();
        return new TextConditioning(prompts, tokens, pooled);
    }

    public Tensor EncodeImages(Tensor rgb, Generator? generator = null) => rgb.clone();
    public Tensor DecodeLatents(Tensor latents) => latents.clone();
    public Tensor PredictNoise(NoiseQuery query) => zeros_like(query.NoisyLatents);
    public void Dispose() { }
}

public class EmbeddingCacheTests
{
    [Fact]
    public void Encodes_each_prompt_once_and_returns_identical_embeddings()
    {
        var dir = Directory.CreateTempSubdirectory("sd-emb-");
        try
        {
            var inner = new CountingTextPrior();
            using var prior = new CachedTextPrior(inner, new EmbeddingCache(dir.FullName));
            using var direct = inner.EncodeText(new[] { "a", "b", "a" });
            inner.EncodedPrompts = 0;

            using (var first = prior.EncodeText(new[] { "a", "b", "a" }))
            {
                inner.EncodedPrompts.Should().Be(2, "duplicates are encoded once");
                TensorAssert.Close(first.Tokens, direct.Tokens, 0, 0);
                TensorAssert.Close(first.Pooled, direct.Pooled, 0, 0);
            }
            // A new cache object on the same folder (a new process) reads from disk.
            using var again = new CachedTextPrior(inner, new EmbeddingCache(dir.FullName));
            using (var second = again.EncodeText(new[] { "b", "a", "c" }))
            {
                inner.EncodedPrompts.Should().Be(3, "only 'c' is new");
                second.Prompts.Should().Equal("b", "a", "c");
                TensorAssert.Close(second.Tokens[1], direct.Tokens[0], 0, 0);
            }
            ((CachedTextPrior)again).Cache.Hits.Should().Be(2);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Keys_include_the_model_and_damaged_files_are_re_encoded()
    {
        var dir = Directory.CreateTempSubdirectory("sd-emb-");
        try
        {
            var cache = new EmbeddingCache(dir.FullName);
            cache.PathFor("m1", "p").Should().NotBe(cache.PathFor("m2", "p"));
            var inner = new CountingTextPrior();
            using (cache.Encode(inner, new[] { "p" })) { }
            File.WriteAllBytes(cache.PathFor(inner.ModelId, "p"), new byte[] { 1, 2, 3 });
            using (cache.Encode(inner, new[] { "p" })) { }
            inner.EncodedPrompts.Should().Be(2);
            Directory.GetFiles(dir.FullName, "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
        }
        finally { dir.Delete(true); }
    }
}
