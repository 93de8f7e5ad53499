using FluentAssertions;
using ScoreDistillation.Cli;
using Xunit;

namespace ScoreDistillation.Tests.Cli;

public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = SdApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Missing_prompt_prints_the_error_and_usage()
    {
        var (code, _, err) = Run("generate");
        code.Should().Be(1);
        err.Should().Contain("error:").And.Contain("Usage:").And.Contain("generate <prompt>").And.NotContain("   at ");
    }

    [Fact]
    public void Unknown_command_and_bad_numbers_print_usage()
    {
        var (code, _, err) = Run("genrate", "a red cube");
        code.Should().Be(1);
        err.Should().Contain("Usage:");
        (code, _, err) = Run("generate", "a red cube", "--steps", "many");
        code.Should().Be(1);
        err.Should().Contain("many").And.Contain("Usage:").And.NotContain("   at ");
    }

    [Theory]
    [InlineData("--distiller", "xyz", "--distiller 'xyz' is unknown")]
    [InlineData("--generator", "nerf", "--generator 'nerf' is unknown")]
    [InlineData("--steps", "0", "--steps must be at least 1")]
    [InlineData("--device", "tpu", "--device 'tpu' is unknown")]
    public void Invalid_values_are_named(string option, string value, string message)
    {
        var (code, _, err) = Run("generate", "a red cube", option, value);
        code.Should().Be(1);
        err.Should().Contain(message).And.Contain("Usage:").And.NotContain("   at ");
    }

    [Fact]
    public void Prior_options_fail_clearly()
    {
        var (code, _, err) = Run("generate", "a red cube", "--mvdream", "/nonexistent/mv.ckpt");
        code.Should().Be(1);
        err.Should().Contain("--mvdream needs --model").And.Contain("Usage:").And.NotContain("   at ");
        (code, _, err) = Run("generate", "a red cube", "--model", "/nonexistent/sd-folder");
        code.Should().Be(1);
        err.Should().Contain("error:").And.Contain("/nonexistent/sd-folder").And.Contain("Usage:").And.NotContain("   at ");
        (code, _, err) = Run("generate", "a red cube", "--mvdream", "/nonexistent/mv.ckpt", "--model", "/nonexistent/sd-folder");
        code.Should().Be(1);
        err.Should().Contain("error:").And.Contain("/nonexistent/").And.NotContain("   at ");
    }

    [Theory]
    [InlineData("float16", "--dtype float16 needs --device cuda")]
    [InlineData("bfloat16", "--dtype bfloat16 needs --device cuda")]
    [InlineData("int8", "--dtype 'int8' is unknown")]
    public void Dtype_other_than_float32_needs_cuda(string dtype, string message)
    {
        var (code, _, err) = Run("generate", "a red cube", "--dtype", dtype);
        code.Should().Be(1);
        err.Should().Contain(message).And.Contain("Usage:").And.NotContain("   at ");
    }

    [Fact]
    public void Train_refuses_a_malformed_library_with_its_name()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "{\"train\": [1, 2]}");
            var (code, _, err) = Run("train", "--prompts", file);
            code.Should().Be(1);
            err.Should().Contain("\"train\"[0] must be a string").And.Contain(file);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void Help_lists_the_commands()
    {
        var (code, output, _) = Run("--help");
        code.Should().Be(0);
        output.Should().Contain("generate").And.Contain("train").And.Contain("render").And.Contain("export").And.Contain("compare");
    }
}
