using System.Diagnostics;
using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

public class NgpRenderTests(ITestOutputHelper output)
{
    static readonly HashGridOptions Tiny = new() { Levels = 4, FeaturesPerLevel = 2, Log2TableSize = 12, BaseResolution = 4, PerLevelScale = 2.0 };

    static HyperInstantNgpOptions SmallHyper => new()
    {
        Encoding = Tiny,
        TextDims = 16,
        Background = new TextConditionedHashGridBackgroundOptions { Encoding = Tiny with { PerLevelScale = 1.0 }, TextDims = 16 },
    };

    // Few samples per ray keep the CPU render fast; the code path is the full one (proposal, importance, normals).
    static readonly VolumeRendererOptions FewSamples = new() { ProposalSamples = 6, ImportanceSamples = 3 };

    static TextConditioning Text(int b, int dims, ulong seed)
    {
        var g = new Generator(seed);
        return new TextConditioning(Enumerable.Range(0, b).Select(i => $"prompt {i}").ToArray(),
            randn(new long[] { b, 4, dims }, generator: g), randn(new long[] { b, dims }, generator: g));
    }

    static double Step(HyperInstantNgp gen, VolumeRenderer renderer, TextConditioning text, CameraBatch cams, Generator jitter, int size)
    {
        using var scope = NewDisposeScope();
        gen.zero_grad();
        var field = gen.Generate(text);
        using var result = renderer.Render(field, cams, size, size, gen.Background, text.Pooled, jitter);
        var loss = result.Rgb.square().mean().add(Regularizers.Sparsity(result.Opacity));
        if (result.SampleGradients is not null) loss = loss.add(Regularizers.Eikonal(result.SampleGradients));
        loss.backward();
        return loss.item<float>();
    }

    [Fact]
    public void HyperInstantNgpRendersATwoPromptBatchWithGradientsToEveryParameter()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(SmallHyper, new Generator(0));
        using var text = Text(2, 16, 1);
        using var cams = Cameras.Orbit(2);
        var renderer = new VolumeRenderer(FewSamples);
        double loss = Step(gen, renderer, text, cams, new Generator(3), 32);
        double.IsFinite(loss).Should().BeTrue();
        foreach (var (name, p) in gen.named_parameters())
        {
            p.grad.Should().NotBeNull(name);
            p.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, name);
        }

        // The batch render equals the two prompts rendered one by one (deterministic sampling: no jitter).
        using var noGrad = no_grad();
        var field = gen.Generate(text);
        using var both = renderer.Render(field, cams, 16, 16, gen.Background, text.Pooled);
        for (int i = 0; i < 2; i++)
        {
            using var one = text.Select(new[] { i });
            using var cam = new CameraBatch(cams.CameraToWorld.narrow(0, i, 1).clone(), cams.FovY.narrow(0, i, 1).clone(),
                cams.Elevation.narrow(0, i, 1).clone(), cams.Azimuth.narrow(0, i, 1).clone(), cams.Distance.narrow(0, i, 1).clone());
            using var single = renderer.Render(gen.Generate(one), cam, 16, 16, gen.Background, one.Pooled);
            TensorAssert.Close(both.Rgb.narrow(0, i, 1), single.Rgb, atol: 1e-5, rtol: 1e-4);
            TensorAssert.Close(both.Opacity.narrow(0, i, 1), single.Opacity, atol: 1e-5, rtol: 1e-4);
        }
    }

    [Theory]
    [InlineData(FieldKind.Density)]
    [InlineData(FieldKind.SignedDistance)]
    public void InstantNgpRendersDifferentiably(FieldKind kind)
    {
        using var scope = NewDisposeScope();
        using var ngp = new InstantNgp(new InstantNgpOptions { Kind = kind, Encoding = Tiny, SdfSphereBias = kind == FieldKind.SignedDistance ? 0.5 : null }, new Generator(0));
        using var text = Text(1, 16, 1);
        using var cams = Cameras.Orbit(1, distance: 2.5);
        var renderer = new VolumeRenderer(FewSamples);
        using var result = renderer.Render(ngp.Generate(text), cams, 16, 16, new SolidColorBackground(), null, new Generator(1));
        result.Rgb.shape.Should().Equal(1L, 3L, 16L, 16L);
        result.Rgb.sum().backward();
        foreach (var (name, p) in ngp.named_parameters())
            p.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, name);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void TwoPromptRenderStepKeepsMemoryFlatOver200Steps()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(SmallHyper, new Generator(0));
        using var text = Text(2, 16, 1);
        using var cams = Cameras.Orbit(2);
        var renderer = new VolumeRenderer(FewSamples with { ProposalSamples = 2, ImportanceSamples = 2, ComputeNormals = false });
        var jitter = new Generator(3);
        var proc = Process.GetCurrentProcess();
        long liveAtWarm = 0, rssAtWarm = 0;
        var sw = Stopwatch.StartNew();
        for (int step = 0; step < 200; step++)
        {
            double loss = Step(gen, renderer, text, cams, jitter, 64);
            double.IsFinite(loss).Should().BeTrue();
            if (step == 19)
            {
                proc.Refresh();
                liveAtWarm = LiveTensors.Count;
                rssAtWarm = proc.WorkingSet64;
            }
            else if (step > 19)
            {
                LiveTensors.Count.Should().Be(liveAtWarm, $"step {step} must not leak tensors");
            }
        }
        proc.Refresh();
        long growth = proc.WorkingSet64 - rssAtWarm;
        output.WriteLine($"200 steps of a 64×64 2-prompt render (5 samples/ray, no normals): {sw.Elapsed.TotalSeconds:F1} s; RSS {rssAtWarm / 1048576} MB at step 20, growth {growth / 1048576} MB by step 200");
        growth.Should().BeLessThan(128L << 20, "native memory must stay flat (allocator noise allowed; tensors are counted exactly above)");
    }
}
