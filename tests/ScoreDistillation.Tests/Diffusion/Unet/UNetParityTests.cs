using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Unet;

/// <summary>Parity of <see cref="UNet2DConditionModel"/> with diffusers 0.27.2 on the tiny SD 1.5-style and SD 2.1-style vectors.</summary>
public sealed class UNetParityTests(ITestOutputHelper output)
{
    // README: UNet/VAE atol 1e-4 plus rtol 1e-4 for an independent implementation.
    const double Tol = 1e-4;

    internal static UNet2DConditionModel LoadTiny(string name, out Dictionary<string, Tensor> vectors)
    {
        using var json = TestVectors.LoadJson("diffusers", $"{name}.json");
        var config = UNet2DConditionConfig.FromJson(json.RootElement.GetProperty("config").GetRawText());
        var model = new UNet2DConditionModel(config);
        var report = CheckpointLoader.Load(model, TestVectors.PathOf("diffusers", $"{name}.safetensors"), strict: false);
        report.MissingKeys.Should().BeEmpty();
        report.UnexpectedKeys.Should().OnlyContain(k => k.StartsWith("__", StringComparison.Ordinal));
        model.eval();
        vectors = TestVectors.LoadSafetensors("diffusers", $"{name}.safetensors");
        return model;
    }

    [Theory]
    [InlineData("unet_sd15_tiny")]
    [InlineData("unet_sd21_tiny")]
    public void OutputAndIntermediatesMatchDiffusers(string name)
    {
        using var model = LoadTiny(name, out var v);
        try
        {
            var traced = new Dictionary<string, Tensor>();
            model.Trace = (k, t) => traced[k] = t.detach().clone().DetachFromDisposeScope();
            Tensor result;
            using (no_grad())
                result = model.forward(v["__input__.sample"], v["__input__.timestep"].to(ScalarType.Int64), v["__input__.encoder_hidden_states"]);
            using (result)
            {
                foreach (var (key, actual) in traced)
                {
                    var expected = v[$"__intermediate__.{key}"];
                    output.WriteLine($"{name} {key}: max abs err {TensorAssert.MaxAbsError(actual, expected):E2}");
                    TensorAssert.Close(actual, expected, Tol, Tol, key);
                }
                traced.Keys.Should().Contain(new[] { "time_proj", "time_embedding", "down_blocks.0", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.2" });
                double err = TensorAssert.MaxAbsError(result, v["__output__.sample"]);
                output.WriteLine($"{name} output: max abs err {err:E2}");
                TensorAssert.Close(result, v["__output__.sample"], Tol, Tol, "output sample");
            }
            foreach (var t in traced.Values) t.Dispose();
        }
        finally
        {
            foreach (var t in v.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("unet_sd15_tiny")]
    [InlineData("unet_sd21_tiny")]
    public void FirstTransformerBlockSubLayersMatchDiffusers(string name)
    {
        using var model = LoadTiny(name, out var v);
        try
        {
            var traced = new Dictionary<string, Tensor>();
            var down0 = (ScoreDistillation.Diffusion.Blocks.CrossAttnDownBlock2D)model.down_blocks[0];
            var tb = down0.FirstTransformerBlock;
            tb.Trace = (k, t) => { if (!traced.ContainsKey(k)) traced[k] = t.detach().clone().DetachFromDisposeScope(); };
            using (no_grad())
                model.forward(v["__input__.sample"], v["__input__.timestep"], v["__input__.encoder_hidden_states"]).Dispose();
            foreach (var k in new[] { "attn1", "attn2", "ff" })
            {
                var expected = v[$"__intermediate__.down_blocks.0.attentions.0.transformer_blocks.0.{k}"];
                output.WriteLine($"{name} {k}: max abs err {TensorAssert.MaxAbsError(traced[k], expected):E2}");
                TensorAssert.Close(traced[k], expected, Tol, Tol, k);
            }
            foreach (var t in traced.Values) t.Dispose();
        }
        finally
        {
            foreach (var t in v.Values) t.Dispose();
        }
    }
}
