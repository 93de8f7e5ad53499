using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class WorldTests
{
    [Theory]
    [InlineData("a red cube", "a red cube")]
    [InlineData("  The   RED   Cube ", "a red cube")]
    [InlineData("red cube", "a red cube")]
    [InlineData("an Orange cone", "an orange cone")]
    [InlineData("a orange cone", "an orange cone")]
    [InlineData("a blue torus, side view", "a blue torus")]
    [InlineData("a red cube with a blue front", "a red cube with a blue front")]
    [InlineData("A Red Pyramid With Green Top, front view", "a red pyramid with a green top")]
    [InlineData("an orange octahedron with an orange back", "an orange octahedron with an orange back")]
    public void Parse_tolerates_articles_case_spaces_and_view_suffix(string prompt, string canonical)
    {
        WorldObject.Parse(prompt).Prompt.Should().Be(canonical);
        BuiltInTextEncoder.Canonical(prompt).Should().Be(canonical);
    }

    [Theory]
    [InlineData("a red dragon", "dragon")]
    [InlineData("a scarlet cube", "scarlet")]
    [InlineData("a red cube with a blue side", "side")]
    public void Unknown_word_lists_the_vocabulary(string prompt, string word)
    {
        var act = () => WorldObject.Parse(prompt);
        var ex = act.Should().Throw<ArgumentException>().Which;
        ex.Message.Should().Contain($"'{word}'");
        ex.Message.Should().Contain("Colours: red, green, blue");
        ex.Message.Should().Contain("Shapes: sphere, cube, cylinder, cone, torus, pyramid, capsule, octahedron, prism");
        ex.Message.Should().Contain("Sides: front, back, top");
    }

    [Theory]
    [InlineData("a cube red")]
    [InlineData("a red")]
    [InlineData("a red cube with blue")]
    public void Malformed_prompt_explains_the_grammar(string prompt)
    {
        var act = () => WorldObject.Parse(prompt);
        act.Should().Throw<ArgumentException>().WithMessage("*Grammar*Colours:*");
    }

    [Fact]
    public void World_has_at_least_8_colours_and_8_shapes()
    {
        WorldVocabulary.Colours.Count.Should().BeGreaterThanOrEqualTo(8);
        WorldVocabulary.Shapes.Count.Should().BeGreaterThanOrEqualTo(8);
        WorldVocabulary.AllPlainPrompts().Should().HaveCount(WorldVocabulary.Colours.Count * WorldVocabulary.Shapes.Count).And.OnlyHaveUniqueItems();
    }

    [Fact]
    public void Every_shape_is_solid_at_the_centre_and_empty_outside_its_extent()
    {
        using var scope = NewDisposeScope();
        var probes = tensor(new float[,] { { 0, 0, 0 }, { 0.9f, 0, 0 }, { 0, 0.9f, 0 }, { 0, 0, 0.9f }, { -0.9f, -0.9f, -0.9f } });
        foreach (var shape in Enum.GetValues<WorldShape>())
        {
            var obj = new WorldObject(shape, "red", Size: 0.3);
            var d = AnalyticShapes.SignedDistance(obj, probes).squeeze(-1).data<float>().ToArray();
            if (shape == WorldShape.Torus) d[0].Should().BeGreaterThan(0, "a torus has a hole");
            else d[0].Should().BeLessThan(0, $"{shape} contains its centre");
            d.Skip(1).Should().OnlyContain(v => v > 0, $"{shape} stays inside ~0.45 of the origin");
        }
    }

    [Fact]
    public void Sphere_sdf_is_exact_and_normals_are_radial()
    {
        using var scope = NewDisposeScope();
        var obj = new WorldObject(WorldShape.Sphere, "blue", Size: 0.25);
        var p = tensor(new float[,] { { 0.5f, 0, 0 }, { 0, -0.1f, 0 }, { 0.3f, 0.4f, 0 } });
        TensorAssert.Close(AnalyticShapes.SignedDistance(obj, p).squeeze(-1), tensor(new float[] { 0.25f, -0.15f, 0.25f }), atol: 1e-6);
        TensorAssert.Close(AnalyticShapes.Normal(obj, p)[2], tensor(new float[] { 0.6f, 0.8f, 0 }), atol: 1e-3);
    }

    [Fact]
    public void Surface_points_lie_on_the_surface()
    {
        using var scope = NewDisposeScope();
        using var g = new TorchSharp.torch.Generator(3);
        foreach (var shape in Enum.GetValues<WorldShape>())
        {
            var obj = new WorldObject(shape, "red");
            var pts = AnalyticShapes.SurfacePoints(obj, 256, g);
            double worst = AnalyticShapes.SignedDistance(obj, pts).abs().max().item<float>();
            worst.Should().BeLessThan(2e-3, $"{shape} surface projection");
        }
    }

    [Fact]
    public void Two_tone_object_has_its_accent_only_on_the_named_side()
    {
        using var scope = NewDisposeScope();
        var obj = WorldObject.Parse("a red cube with a blue front");
        var p = tensor(new float[,] { { 0.22f, 0, 0 }, { -0.22f, 0, 0 }, { 0, 0.22f, 0 } });
        var rgb = AnalyticShapes.Albedo(obj, p);
        var blue = WorldVocabulary.Albedo("blue");
        var red = WorldVocabulary.Albedo("red");
        TensorAssert.Close(rgb, tensor(new[,] { { blue.R, blue.G, blue.B }, { red.R, red.G, red.B }, { red.R, red.G, red.B } }));
    }

    [Fact]
    public void Field_features_decode_to_the_shaded_colour()
    {
        using var scope = NewDisposeScope();
        var field = new ProceduralField(new[] { WorldObject.Parse("a green sphere"), WorldObject.Parse("a yellow cube") });
        using var g = new TorchSharp.torch.Generator(1);
        var pts = rand(new long[] { 2, 50, 3 }, generator: g) - 0.5f;
        var sample = field.Query(pts);
        sample.Geometry.shape.Should().Equal(2, 50, 1);
        TensorAssert.Close(sample.Features.sigmoid(), field.Colour(pts).clamp(1e-3, 1 - 1e-3), atol: 1e-5);
        TensorAssert.Close(field.QueryGeometry(pts), sample.Geometry);
    }
}
