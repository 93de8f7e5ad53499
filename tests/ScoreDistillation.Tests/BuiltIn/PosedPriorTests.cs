using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class PosedPriorTests
{
    const string Prompt = "a red cube with a blue front";
    const double Fov = 55;

    static BuiltInPrior Posed(double? fov = Fov) => new(new BuiltInPriorOptions
    {
        References = ReferenceRenderingTests.Small() with { Cameras = new CameraSamplerOptions { FovY = (Fov, Fov) } },
        TextWidth = 32,
        PosedFovY = fov,
    });

    [Fact]
    public void A_posed_view_at_a_reference_camera_is_that_reference()
    {
        using var scope = NewDisposeScope();
        using var prior = Posed();
        var refs = prior.Library.ForPrompt(Prompt);
        // Same camera and fovy; near/far differ (the library's enclose every training distance), so samples differ slightly.
        var posed = prior.Library.RenderAt(Prompt, refs.CameraToWorld, Fov);
        posed.shape.Should().Equal(refs.Images.shape);
        var diff = (posed - refs.Images.to(ScalarType.Float32)).abs();
        diff.mean().item<float>().Should().BeLessThan(0.01f);
        diff.max().item<float>().Should().BeLessThan(0.1f);
        // A view from the front shows the blue accent, one from the back does not.
        using var cams = Cameras.FromSpherical(tensor(new[] { 10f, 10f }), tensor(new[] { 0f, 180f }), tensor(new[] { 1.3f, 1.3f }), tensor(new[] { 55f, 55f }));
        var fb = prior.Library.RenderAt(Prompt, cams.CameraToWorld, Fov);
        var blueMinusRed = (fb[.., 2] - fb[.., 0]).mean(new long[] { 1, 2 });
        blueMinusRed[0].item<float>().Should().BeGreaterThan(blueMinusRed[1].item<float>() + 0.1f, "the front view shows the blue face");
    }

    [Fact]
    public void Conditional_rows_denoise_to_the_render_at_their_camera_at_every_t_and_unconditional_rows_stay_a_mixture()
    {
        using var scope = NewDisposeScope();
        using var prior = Posed();
        using var agnostic = new BuiltInPrior(new BuiltInPriorOptions { References = ReferenceRenderingTests.Small() with { Cameras = new CameraSamplerOptions { FovY = (Fov, Fov) } }, TextWidth = 32 });
        prior.UsesCameras.Should().BeTrue();
        prior.ModelId.Should().Contain("posed(fovy=55)");
        using var cams = Cameras.FromSpherical(tensor(new[] { 20f, 5f, 20f, 20f }), tensor(new[] { 30f, 200f, 30f, 30f }), tensor(new[] { 1.2f, 1.4f, 1.2f, 1.2f }), full(4, 55f));
        var expected = 2 * prior.Library.RenderAt(Prompt, cams.CameraToWorld, Fov) - 1;
        using var g = new TorchSharp.torch.Generator(3);
        var x = randn(new long[] { 4, 3, 16, 16 }, generator: g);
        var t = tensor(new long[] { 50, 980, 500, 500 });
        var text = prior.EncodeText(new[] { Prompt, Prompt, Prompt, "" });
        var x0 = prior.PredictOriginal(new NoiseQuery(x, t, text.Tokens, cams.CameraToWorld));
        TensorAssert.Close(x0[..3], expected[..3], rtol: 0, atol: 1e-5, because: "x̂₀ of a conditional row is the posed render, whatever t and x_t");
        // Row 2 repeats row 0's camera at another t: same x̂₀ (served from the cache).
        TensorAssert.Close(x0[2], x0[0], atol: 0, rtol: 0);
        var uncond = agnostic.PredictOriginal(new NoiseQuery(x[3..], t[3..], agnostic.EncodeText(new[] { "" }).Tokens));
        TensorAssert.Close(x0[3..], uncond, rtol: 0, atol: 1e-5, because: "the unconditional distribution is the view-agnostic mixture");
        // ε̂ is consistent with x̂₀.
        var eps = prior.PredictNoise(new NoiseQuery(x, t, text.Tokens, cams.CameraToWorld));
        var a = prior.Schedule.AlphaBarAt(t, 4, ScalarType.Float32);
        TensorAssert.Close(eps, (x - a.sqrt() * x0) / (1 - a).sqrt(), atol: 1e-4, rtol: 1e-4);
    }

    [Fact]
    public void Posed_settings_are_checked()
    {
        using var scope = NewDisposeScope();
        using var prior = Posed();
        var text = prior.EncodeText(new[] { Prompt });
        var act = () => prior.PredictNoise(new NoiseQuery(zeros(1, 3, 16, 16), tensor(new long[] { 10 }), text.Tokens));
        act.Should().Throw<ArgumentException>().WithMessage("*posed built-in prior needs NoiseQuery.Cameras*");
        var wrong = () => prior.PredictNoise(new NoiseQuery(zeros(1, 3, 16, 16), tensor(new long[] { 10 }), text.Tokens, zeros(2, 4, 4)));
        wrong.Should().Throw<ArgumentException>().WithMessage("*Cameras must be [1, 4, 4]*");
        var badFov = () => Posed(fov: 200);
        badFov.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*PosedFovY*");
        var sets = new Dictionary<string, ReferenceViews> { ["a red cube"] = new(rand(2, 3, 8, 8), BuiltInPriorTests.CamerasAt(0, 90)) };
        var explicitLib = () => new BuiltInPrior(ReferenceLibrary.FromViews(sets), new BuiltInPriorOptions { TextWidth = 32, PosedFovY = 55 }, ownsLibrary: true);
        explicitLib.Should().Throw<ArgumentException>().WithMessage("*Posed references need a rendered library*");
        var uncondRender = () => prior.Library.RenderAt("", BuiltInPriorTests.CamerasAt(0), Fov);
        uncondRender.Should().Throw<ArgumentException>().WithMessage("*unconditional prompt has no object*");
    }
}
