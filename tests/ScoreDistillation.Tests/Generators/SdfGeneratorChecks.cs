using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

/// <summary>Checks shared by the SDF generator tests (3DConv-Net and Triplane-Transformer): same steps, same tolerances.</summary>
internal static class SdfGeneratorChecks
{
    /// <summary>With the SDF MLP zeroed, the geometry is exactly ‖p‖ − <paramref name="biasRadius"/>.</summary>
    public static void QueryAddsSphereBias(I3DGenerator net, TextConditioning text, double biasRadius)
    {
        using (no_grad())
            foreach (var (name, p) in net.Module.named_parameters())
                if (name.StartsWith("sdf_network", StringComparison.Ordinal)) p.zero_();
        using var scope = NewDisposeScope();
        var field = net.Generate(text);
        var points = rand([1, 20, 3]) * 4 - 2;
        TensorAssert.Close(field.QueryGeometry(points), points.norm(-1, true) - biasRadius, 1e-6, 1e-6);
    }

    /// <summary>A squared-output loss on a [2, 200] query gives every parameter a finite, non-zero gradient.</summary>
    public static void BackwardReachesEveryParameter(I3DGenerator net, TextConditioning text)
    {
        using var scope = NewDisposeScope();
        var s = net.Generate(text).Query(rand([2, 200, 3], generator: new Generator(4, CPU)) * 3 - 1.5);
        (s.Geometry.square().sum() + s.Features.square().sum()).backward();
        var zero = new List<string>();
        foreach (var (name, p) in net.Module.named_parameters())
        {
            p.grad.Should().NotBeNull(name);
            TensorAssert.AllFinite(p.grad!, name);
            if (p.grad!.abs().sum().item<float>() == 0) zero.Add(name);
        }
        zero.Should().BeEmpty("every parameter receives a gradient");
    }

    /// <summary>Three generate/query/backward steps leave the same number of live tensors after each.</summary>
    public static void TrainingStepsKeepLiveTensorCountFlat(I3DGenerator net, TextConditioning text)
    {
        var counts = new List<long>();
        for (int step = 0; step < 3; step++)
        {
            using (var scope = NewDisposeScope())
            {
                net.Module.zero_grad();
                var s = net.Generate(text).Query(rand([1, 64, 3]) * 4 - 2);
                (s.Geometry.sum() + s.Features.sum()).backward();
            }
            counts.Add(LiveTensors.Count);
        }
        counts.Distinct().Should().HaveCount(1, $"live tensors per step: {string.Join(", ", counts)}");
    }

    /// <summary>
    /// Two 64×64 volume renders with an eikonal term: a visible, finite image, finite non-zero gradients on every
    /// parameter and a flat live-tensor count.
    /// </summary>
    public static void RenderForwardBackward64x64(I3DGenerator net, TextConditioning text)
    {
        // Fewer samples per ray than the reference (13 instead of 193) keep the CPU test fast; the code path is the same.
        var renderer = new VolumeRenderer(new VolumeRendererOptions { ProposalSamples = 8, ImportanceSamples = 4 });
        using var cams = Cameras.Orbit(1, elevationDeg: 15, distance: 1.5, fovYDeg: 60);
        var jitter = new Generator(3, CPU);
        var counts = new List<long>();
        for (int step = 0; step < 2; step++)
        {
            using (var scope = NewDisposeScope())
            {
                net.Module.zero_grad();
                var field = net.Generate(text);
                using var render = renderer.Render(field, cams, 64, 64, new SolidColorBackground(), null, jitter);
                render.Rgb.shape.Should().Equal(1, 3, 64, 64);
                TensorAssert.AllFinite(render.Rgb);
                render.Opacity.max().item<float>().Should().BeGreaterThan(0.5f, "the sphere-biased SDF is visible");
                var eikonal = (render.SampleGradients!.norm(-1) - 1).square().mean();
                (render.Rgb.mean() + 0.1 * eikonal).backward();
                double total = 0;
                foreach (var (name, p) in net.Module.named_parameters())
                {
                    p.grad.Should().NotBeNull(name);
                    TensorAssert.AllFinite(p.grad!, name);
                    total += p.grad!.square().sum().item<float>();
                }
                total.Should().BeGreaterThan(0);
            }
            counts.Add(LiveTensors.Count);
        }
        counts.Distinct().Should().HaveCount(1, $"live tensors after each step: {string.Join(", ", counts)}");
    }
}
