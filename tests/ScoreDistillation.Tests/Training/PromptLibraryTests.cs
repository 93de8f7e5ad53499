using FluentAssertions;
using ScoreDistillation.Training;
using Xunit;

namespace ScoreDistillation.Tests.Training;

public class PromptLibraryTests
{
    [Fact]
    public void Parses_the_scaledreamer_format()
    {
        var lib = PromptLibrary.Parse("""{"train": ["a", "b", "c"], "val": ["v"], "test": ["t1", "t2"]}""");
        lib.Train.Should().Equal("a", "b", "c");
        lib[PromptSplit.Val].Should().Equal("v");
        lib.Test.Should().Equal("t1", "t2");
    }

    [Fact]
    public void Loads_the_shipped_magic3d_library()
    {
        var lib = PromptLibrary.Load(Path.Combine(AppContext.BaseDirectory, "TestData", "training", "magic3d_15_prompt_library.json"));
        lib.Train.Should().HaveCount(15);
        lib.Val.Should().HaveCount(15);
        lib.Test.Should().HaveCount(15);
    }

    [Theory]
    [InlineData("{\"train\": [\"a\",", "not valid JSON")]
    [InlineData("[\"a\"]", "must be a JSON object")]
    [InlineData("{\"val\": [\"a\"]}", "no \"train\" list")]
    [InlineData("{\"train\": \"a\"}", "\"train\" must be an array")]
    [InlineData("{\"train\": [\"a\", 3]}", "\"train\"[1] must be a string")]
    [InlineData("{\"train\": []}", "\"train\" list is empty")]
    [InlineData("{\"train\": [\"a\", \"  \"]}", "\"train\"[1] is an empty prompt")]
    [InlineData("{\"train\": [\"a\"], \"tset\": []}", "unknown key(s) \"tset\"")]
    public void Malformed_files_get_a_message_naming_the_problem(string json, string expected)
    {
        var act = () => PromptLibrary.Parse(json, "lib.json");
        act.Should().Throw<FormatException>().Which.Message.Should().Contain(expected).And.Contain("lib.json");
    }

    [Fact]
    public void Missing_file_is_named()
    {
        var act = () => PromptLibrary.Load("/nonexistent/prompts.json");
        act.Should().Throw<FileNotFoundException>().WithMessage("*prompts.json*");
    }

    [Fact]
    public void Shards_like_rank_slicing()
    {
        var lib = new PromptLibrary(new[] { "p0", "p1", "p2", "p3", "p4" }, new[] { "v" }, new[] { "t0", "t1" });
        lib.Shard(0, 2).Train.Should().Equal("p0", "p2", "p4");
        lib.Shard(1, 2).Train.Should().Equal("p1", "p3");
        lib.Shard(1, 2).Test.Should().Equal("t1");
        lib.Shard(1, 2).Val.Should().Equal("v");
        ((Action)(() => lib.Shard(2, 2))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => lib.Shard(0, 6))).Should().Throw<InvalidOperationException>().WithMessage("*5 training prompts*6 ranks*");
    }

    [Fact]
    public void Save_round_trips()
    {
        var dir = Directory.CreateTempSubdirectory("sd-prompts-");
        try
        {
            var lib = new PromptLibrary(new[] { "a red cube" }, new[] { "b" }, new[] { "c" });
            var path = Path.Combine(dir.FullName, "lib.json");
            lib.Save(path);
            PromptLibrary.Load(path).Train.Should().Equal("a red cube");
        }
        finally { dir.Delete(true); }
    }
}
