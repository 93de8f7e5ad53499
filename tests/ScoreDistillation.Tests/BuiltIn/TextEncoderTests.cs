using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class TextEncoderTests
{
    [Fact]
    public void Encoding_has_the_configured_shapes_and_decodes_back_to_the_canonical_prompts()
    {
        var enc = new BuiltInTextEncoder(width: 64, maxTokens: 6);
        var prompts = new[] { "The Red  Cube", "", "an orange cone with a blue front", "a black prism with a pink top" };
        using var text = enc.Encode(prompts);
        text.Tokens.shape.Should().Equal(4, 6, 64);
        text.Pooled.shape.Should().Equal(4, 64);
        text.Prompts.Should().Equal("a red cube", "", "an orange cone with a blue front", "a black prism with a pink top");
        enc.Decode(text.Tokens).Should().Equal(text.Prompts);
    }

    [Fact]
    public void Default_width_is_1024_and_encoding_is_deterministic_across_instances()
    {
        using var a = new BuiltInTextEncoder().Encode(new[] { "a red cube" });
        using var b = new BuiltInTextEncoder().Encode(new[] { "a red cube" });
        a.Tokens.shape[2].Should().Be(1024);
        TensorAssert.Close(a.Tokens, b.Tokens, rtol: 0, atol: 0);
        using var c = new BuiltInTextEncoder(seed: 7).Encode(new[] { "a red cube" });
        TensorAssert.MaxAbsError(a.Tokens, c.Tokens).Should().BeGreaterThan(0.01);
    }

    [Fact]
    public void Pooled_embedding_is_compositional_so_held_out_combinations_are_predictable()
    {
        // pooled(red cube) − pooled(red sphere) = pooled(blue cube) − pooled(blue sphere): a linear read-out trained on three
        // of the four combinations reproduces the fourth.
        var enc = new BuiltInTextEncoder(width: 256);
        using var t = enc.Encode(new[] { "a red cube", "a red sphere", "a blue cube", "a blue sphere", "" });
        var p = t.Pooled;
        TensorAssert.Close(p[0] - p[1], p[2] - p[3], atol: 1e-6);
        p[4].abs().max().item<float>().Should().Be(0, "the unconditional prompt has a zero pooled vector");
        // Distinct role bindings: "red cube with blue front" ≠ "blue cube with red front".
        using var u = enc.Encode(new[] { "a red cube with a blue front", "a blue cube with a red front" });
        TensorAssert.MaxAbsError(u.Pooled[0], u.Pooled[1]).Should().BeGreaterThan(0.05);
    }

    [Fact]
    public void Decode_rejects_embeddings_it_did_not_produce()
    {
        var enc = new BuiltInTextEncoder(width: 32);
        using var t = enc.Encode(new[] { "a red cube" });
        using var bad = t.Tokens + 0.1f;
        var act = () => enc.Decode(bad);
        act.Should().Throw<ArgumentException>().WithMessage("*not an embedding of builtin-text*");
        using var wrongShape = zeros(1, 8, 16);
        var act2 = () => enc.Decode(wrongShape);
        act2.Should().Throw<ArgumentException>().WithMessage("*[N, 8, 32]*");
    }

    [Fact]
    public void Unknown_words_in_text_encoding_list_the_vocabulary()
    {
        var enc = new BuiltInTextEncoder(width: 16);
        var act = () => enc.Encode(new[] { "a shiny red cube" });
        act.Should().Throw<ArgumentException>().WithMessage("*'shiny'*Colours:*Shapes:*");
    }
}
