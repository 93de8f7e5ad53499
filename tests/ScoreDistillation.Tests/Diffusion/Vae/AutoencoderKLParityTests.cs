using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Diffusion.Vae;

/// <summary>Parity of <see cref="AutoencoderKL"/> with diffusers 0.27.2 on the tiny VAE vectors.</summary>
public sealed class AutoencoderKLParityTests(ITestOutputHelper output)
{
    const double Tol = 1e-4;

    internal static AutoencoderKL LoadTiny(out Dictionary<string, Tensor> vectors)
    {
        using var json = TestVectors.LoadJson("diffusers", "vae_tiny.json");
        var config = AutoencoderKLConfig.FromJson(json.RootElement.GetProperty("config").GetRawText());
        var model = new AutoencoderKL(config);
        var report = CheckpointLoader.Load(model, TestVectors.PathOf("diffusers", "vae_tiny.safetensors"), strict: false);
        report.MissingKeys.Should().BeEmpty();
        report.UnexpectedKeys.Should().OnlyContain(k => k.StartsWith("__", StringComparison.Ordinal));
        model.eval();
        vectors = TestVectors.LoadSafetensors("diffusers", "vae_tiny.safetensors");
        return model;
    }

    void Check(string what, Tensor actual, Tensor expected)
    {
        output.WriteLine($"{what}: max abs err {TensorAssert.MaxAbsError(actual, expected):E2}");
        TensorAssert.Close(actual, expected, Tol, Tol, what);
    }

    [Fact]
    public void EncodeDecodeAndReconstructionMatchDiffusers()
    {
        using var vae = LoadTiny(out var v);
        try
        {
            vae.ScalingFactor.Should().Be(0.18215);
            vae.DownsampleFactor.Should().Be(2);
            var traced = new Dictionary<string, Tensor>();
            string phase = "encode";
            vae.Trace = (k, t) => traced[$"{phase}.{k}"] = t.detach().clone().DetachFromDisposeScope();
            using (no_grad())
            {
                using (var posterior = vae.Encode(v["__input__.image"]))
                {
                    Check("latent_dist.mean", posterior.Mean, v["__output__.latent_dist.mean"]);
                    Check("latent_dist.logvar", posterior.LogVar, v["__output__.latent_dist.logvar"]);
                    Check("latent_dist.std", posterior.Std, v["__output__.latent_dist.std"]);
                }
                phase = "decode";
                using (var decoded = vae.Decode(v["__input__.latent"]))
                    Check("decoded", decoded, v["__output__.decoded"]);
                phase = "forward";
                using (var reconstruction = vae.forward(v["__input__.image"]))
                    Check("reconstruction", reconstruction, v["__output__.reconstruction"]);
            }
            int compared = 0;
            foreach (var (key, actual) in traced)
                if (v.TryGetValue($"__intermediate__.{key}", out var expected)) { Check(key, actual, expected); compared++; }
            compared.Should().BeGreaterThanOrEqualTo(6);
            foreach (var t in traced.Values) t.Dispose();
        }
        finally
        {
            foreach (var t in v.Values) t.Dispose();
        }
    }

    [Fact]
    public void PosteriorSampleIsReproducibleAndGradientReachesTheImage()
    {
        using var vae = LoadTiny(out var v);
        try
        {
            using var image = v["__input__.image"].clone().requires_grad_(true);
            using var posterior = vae.Encode(image);
            using var g1 = new Generator(7);
            using var g2 = new Generator(7);
            using var s1 = posterior.Sample(g1);
            using var s2 = posterior.Sample(g2);
            TensorAssert.Close(s1, s2, 0, 0, "same seed, same sample");
            using var eps = randn(posterior.Mean.shape, generator: new Generator(7));
            using var expected = posterior.Mean + posterior.Std * eps;
            TensorAssert.Close(s1, expected, 1e-6, 1e-6, "mean + std * randn(generator)");
            using var loss = (s1 * vae.ScalingFactor).square().sum();
            loss.backward();
            image.grad.Should().NotBeNull();
            image.grad!.abs().sum().item<float>().Should().BeGreaterThan(0f);
        }
        finally
        {
            foreach (var t in v.Values) t.Dispose();
        }
    }
}
