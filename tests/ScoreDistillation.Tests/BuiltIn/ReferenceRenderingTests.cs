using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class ReferenceRenderingTests(ITestOutputHelper output)
{
    static readonly string[] Prompts = { "a red cube", "a blue cube", "a red sphere", "a green torus", "a yellow cone", "a purple capsule" };

    internal static ReferenceLibraryOptions Small(long seed = 0, string? cache = null) => new()
    {
        ImageSize = 16,
        ViewsPerPrompt = 8,
        UnconditionalPrompts = Prompts,
        UnconditionalViewsPerPrompt = 2,
        Seed = seed,
        CacheDirectory = cache,
        Renderer = new ReferenceLibraryOptions().Renderer with { ProposalSamples = 32, ImportanceSamples = 16 },
    };

    [Fact]
    public void Reference_views_are_deterministic_under_the_seed_and_look_like_the_object()
    {
        using var scope = NewDisposeScope();
        using var a = new ReferenceLibrary(Small());
        using var b = new ReferenceLibrary(Small());
        using var c = new ReferenceLibrary(Small(seed: 1));
        var va = a.ForPrompt("a red sphere");
        va.Images.shape.Should().Equal(8, 3, 16, 16);
        TensorAssert.Close(b.ForPrompt("The Red Sphere").Images, va.Images, rtol: 0, atol: 0);
        TensorAssert.MaxAbsError(c.ForPrompt("a red sphere").CameraToWorld, va.CameraToWorld).Should().BeGreaterThan(0.01);

        // Centre pixels are red, corners are the white background.
        var centre = va.Images[.., .., 7..9, 7..9].mean(new long[] { 0, 2, 3 });
        centre[0].item<float>().Should().BeGreaterThan(0.3f);
        centre[0].item<float>().Should().BeGreaterThan(3 * centre[2].item<float>());
        va.Images[.., .., 0, 0].min().item<float>().Should().BeGreaterThan(0.97f);

        // The first views of a prompt do not depend on how many are requested: the unconditional set reuses them.
        var uncond = a.Unconditional;
        uncond.Count.Should().Be(2 * Prompts.Length);
        int i = Array.IndexOf(Prompts, "a red sphere");
        TensorAssert.Close(uncond.Images[(2 * i)..(2 * i + 2)], va.Images[..2], atol: 1e-5);
        TensorAssert.Close(uncond.CameraToWorld[(2 * i)..(2 * i + 2)], va.CameraToWorld[..2], atol: 1e-6);
    }

    [Fact]
    public void Disk_cache_round_trips()
    {
        var dir = Path.Combine(Path.GetTempPath(), "sd-builtin-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var scope = NewDisposeScope();
            using var a = new ReferenceLibrary(Small(cache: dir));
            var va = a.ForPrompt("a yellow cone");
            Directory.GetFiles(dir, "*.refs").Should().HaveCount(1);
            using var b = new ReferenceLibrary(Small(cache: dir));
            var vb = b.ForPrompt("a yellow cone");
            TensorAssert.Close(vb.Images, va.Images, rtol: 0, atol: 0);
            TensorAssert.Close(vb.CameraToWorld, va.CameraToWorld, rtol: 0, atol: 0);
            using var other = new ReferenceLibrary(Small(seed: 5, cache: dir));
            other.Id.Should().NotBe(a.Id);
            other.ForPrompt("a yellow cone");
            Directory.GetFiles(dir, "*.refs").Should().HaveCount(2, "a different seed is a different cache entry");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Retrieval_of_rendered_references_is_perfect_and_tells_right_from_wrong_objects()
    {
        using var scope = NewDisposeScope();
        using var lib = new ReferenceLibrary(Small());
        lib.Prefetch(Prompts);
        var images = cat(Prompts.Select(p => lib.ForPrompt(p).Images).ToArray(), 0);
        var truth = Prompts.SelectMany(p => Enumerable.Repeat(p, 8)).ToArray();
        WorldMetrics.RetrievalAtOne(images, truth, Prompts, lib).RecallAtOne.Should().Be(1.0);

        // Fresh evaluation views (the validation orbit, not the training cameras) of the right objects are retrieved.
        var objects = Prompts.Select(p => WorldObject.Parse(p)).ToList();
        using var orbit = Cameras.Orbit(4, elevationDeg: 15, distance: 1.5, fovYDeg: 60);
        using var cams = new CameraBatch(orbit.CameraToWorld.repeat(objects.Count, 1, 1), orbit.FovY.repeat(objects.Count),
            orbit.Elevation.repeat(objects.Count), orbit.Azimuth.repeat(objects.Count), orbit.Distance.repeat(objects.Count));
        var renderer = new VolumeRenderer(lib.Options!.Renderer with { Near = 0.5, Far = 2.5 });
        using var render = renderer.Render(new ProceduralField(objects), cams, 16, 16, new SolidColorBackground());
        var evalTruth = Prompts.SelectMany(p => Enumerable.Repeat(p, 4)).ToArray();
        var good = WorldMetrics.RetrievalAtOne(render.Rgb, evalTruth, Prompts, lib);
        // Labelled with the wrong prompts (each object claims to be the next one), the same views score badly.
        var wrong = Prompts.Skip(1).Append(Prompts[0]).SelectMany(p => Enumerable.Repeat(p, 4)).ToArray();
        var bad = WorldMetrics.RetrievalAtOne(render.Rgb, wrong, Prompts, lib);
        output.WriteLine($"R@1 on orbit views: right labels {good.RecallAtOne:F3}, wrong labels {bad.RecallAtOne:F3}");
        good.RecallAtOne.Should().BeGreaterThanOrEqualTo(0.9);
        bad.RecallAtOne.Should().BeLessThanOrEqualTo(0.1);
    }

    [Fact]
    public void Camera_aware_prior_sees_the_accent_only_from_its_side_and_the_agnostic_prior_everywhere()
    {
        using var scope = NewDisposeScope();
        const string prompt = "a red cube with a blue front";
        var options = Small() with { ViewsPerPrompt = 16, UnconditionalPrompts = new[] { prompt } };
        using var aware = new BuiltInPrior(new BuiltInPriorOptions { References = options, TextWidth = 64, CameraAware = true });
        using var agnostic = new BuiltInPrior(aware.Library, new BuiltInPriorOptions { TextWidth = 64 });
        using var cams = Cameras.FromSpherical(tensor(new float[] { 15, 15 }), tensor(new float[] { 0, 180 }), tensor(new float[] { 1.2f, 1.2f }), tensor(new float[] { 50, 50 }));
        var text = aware.EncodeText(new[] { prompt, prompt });
        // x_t = 0 at t = 999: the estimate is the (camera-weighted) mean of the references.
        var query = new NoiseQuery(zeros(2, 3, 16, 16), tensor(new long[] { 999, 999 }), text.Tokens, cams.CameraToWorld);
        double BlueMinusRed(Tensor x0, int row) => (x0[row, 2, 5..11, 5..11].mean() - x0[row, 0, 5..11, 5..11].mean()).item<float>();
        var xa = aware.PredictOriginal(query);
        var xg = agnostic.PredictOriginal(query);
        double front = BlueMinusRed(xa, 0), back = BlueMinusRed(xa, 1);
        output.WriteLine($"camera-aware blue−red: front {front:F3}, back {back:F3}; agnostic {BlueMinusRed(xg, 0):F3}/{BlueMinusRed(xg, 1):F3}");
        front.Should().BeGreaterThan(back + 0.3, "the accent is on the front");
        TensorAssert.Close(xg[0], xg[1], atol: 1e-6, because: "a view-agnostic prior answers the same for every camera");
    }
}
