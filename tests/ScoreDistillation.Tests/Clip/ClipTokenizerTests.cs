using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;

namespace ScoreDistillation.Tests.Clip;

public class ClipTokenizerTests
{
    static readonly Lazy<(ClipTokenizer Sd15, ClipTokenizer Sd2, ClipTokenizer OpenClip, ClipTokenizer OpenAI)> Tokenizers = new(() =>
    {
        string dir = Path.GetDirectoryName(TestVectors.PathOf("clip", "vocab.json"))!;
        return (ClipTokenizer.FromPretrained(dir, ClipTokenizerOptions.StableDiffusion15),
                ClipTokenizer.FromPretrained(dir, ClipTokenizerOptions.StableDiffusion2),
                ClipTokenizer.FromPretrained(dir, ClipTokenizerOptions.OpenClip),
                ClipTokenizer.FromPretrained(dir, new ClipTokenizerOptions { Flavor = ClipTokenizerFlavor.OpenAI }));
    });

    static List<JsonElement> Cases()
    {
        using var doc = TestVectors.LoadJson("clip", "tokenizer_cases.json");
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(e => e.Clone()).ToList();
    }

    static long[] Ids(JsonElement e, string field) => e.GetProperty(field).EnumerateArray().Select(x => x.GetInt64()).ToArray();

    [Fact]
    public void All_fifty_reference_cases_match_every_implementation_exactly()
    {
        var (sd15, sd2, openClip, openAI) = Tokenizers.Value;
        var cases = Cases();
        cases.Should().HaveCount(50);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            void Check(string what, long[] actual, long[] expected)
            {
                if (!actual.SequenceEqual(expected))
                    failures.Add($"{what} '{prompt}': got [{string.Join(",", actual)}] expected [{string.Join(",", expected)}]");
            }
            Check("bpe(openai)", openAI.EncodeIds(prompt).Select(i => (long)i).ToArray(), Ids(c, "bpe_ids"));
            Check("sd15", sd15.Encode(prompt), Ids(c, "sd15_input_ids"));
            Check("sd2_hf", sd2.Encode(prompt), Ids(c, "sd2_hf_input_ids"));
            Check("open_clip", openClip.Encode(prompt), Ids(c, "open_clip_input_ids"));
        }
        failures.Should().BeEmpty();
    }

    [Fact]
    public void Bpe_tokens_carry_word_ends_and_digits_split_one_per_piece()
    {
        var tok = Tokenizers.Value.Sd15;
        tok.Tokenize("a DSLR photo of a peacock on a surfboard").Should().Equal(
            "a</w>", "dslr</w>", "photo</w>", "of</w>", "a</w>", "pe", "aco", "ck</w>", "on</w>", "a</w>", "surf", "board</w>");
        tok.Tokenize("2023").Should().Equal("2</w>", "0</w>", "2</w>", "3</w>");
        tok.StartId.Should().Be(49406);
        tok.EndId.Should().Be(49407);
        tok.PadId.Should().Be(49407);
        Tokenizers.Value.Sd2.PadId.Should().Be(0);
        tok.VocabularySize.Should().Be(49408);
    }

    [Fact]
    public void Long_prompts_truncate_to_start_75_ids_end_or_throw_without_truncation()
    {
        var tok = Tokenizers.Value.Sd15;
        string prompt = string.Join(' ', Enumerable.Repeat("cat", 100));
        var ids = tok.Encode(prompt);
        ids.Should().HaveCount(77);
        ids[0].Should().Be(49406);
        ids[76].Should().Be(49407);
        var act = () => tok.Encode(prompt, truncate: false);
        act.Should().Throw<ArgumentException>().WithMessage("*100 BPE tokens*");
        using var batch = tok.EncodeBatch(new[] { "a cat", prompt });
        batch.shape.Should().Equal(2, 77);
    }

    [Fact]
    public void Pretrained_folder_reads_the_pad_token_and_names_missing_files()
    {
        string dir = Directory.CreateTempSubdirectory("cliptok").FullName;
        try
        {
            var missing = () => ClipTokenizer.FromPretrained(dir);
            missing.Should().Throw<FileNotFoundException>().WithMessage("*vocab.json*");
            File.Copy(TestVectors.PathOf("clip", "vocab.json"), Path.Combine(dir, "vocab.json"));
            File.Copy(TestVectors.PathOf("clip", "merges.txt"), Path.Combine(dir, "merges.txt"));
            ClipTokenizer.FromPretrained(dir).PadId.Should().Be(49407);
            File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), "{\"pad_token\": {\"content\": \"!\", \"lstrip\": false}}");
            var sd2 = ClipTokenizer.FromPretrained(dir);
            sd2.PadId.Should().Be(0);
            sd2.EncodeIds("wow!!!").Should().Equal(2781, 0, 0, 0);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class ClipTextCleanerTests
{
    [Theory]
    [InlineData("ﬁne ﬂow", "fine flow")]
    [InlineData("mojibake cafÃ©", "mojibake café")]
    [InlineData("“curly” ‘quotes’", "\"curly\" 'quotes'")]
    [InlineData("ＡＢＣ１２３\u3000x", "ABC123 x")]
    [InlineData("a &amp;amp; b", "a & b")]
    [InlineData("<b>bold</b> &amp; text", "<b>bold</b> &amp; text")]
    [InlineData("cafe\u0301", "café")]
    [InlineData("a\r\nb\u0000c", "a\nbc")]
    public void Ftfy_style_fixes_that_change_clip_ids(string input, string expected) =>
        ClipTextCleaner.FixText(input).Should().Be(expected);
}
