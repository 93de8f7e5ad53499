using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Rendering;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

public class MetricsTests
{
    [Fact]
    public void IoU_of_an_object_with_itself_is_one()
    {
        var objects = new[] { WorldObject.Parse("a red torus"), WorldObject.Parse("a blue pyramid with a red front") };
        var iou = WorldMetrics.OccupancyIoU(new ProceduralField(objects), objects, resolution: 48);
        iou.Should().Equal(1.0, 1.0);
    }

    [Fact]
    public void IoU_of_concentric_spheres_is_the_volume_ratio()
    {
        // Sphere of radius r1 inside a sphere of radius r2: IoU = (r1/r2)³.
        var small = WorldObject.Parse("a red sphere", 0.2);
        var large = WorldObject.Parse("a red sphere", 0.3);
        var iou = WorldMetrics.OccupancyIoU(new ProceduralField(new[] { small }), new[] { large }, resolution: 96, extent: 0.5);
        iou[0].Should().BeApproximately(Math.Pow(0.2 / 0.3, 3), 0.01);
    }

    [Fact]
    public void IoU_of_a_cube_and_its_inscribed_sphere_is_pi_over_six()
    {
        // Cube of half-size h = 0.75·s; a sphere of radius h is inscribed: IoU = (4/3·π·h³)/(8h³) = π/6.
        var cube = WorldObject.Parse("a red cube", 0.4);
        var sphere = WorldObject.Parse("a red sphere", 0.3);
        // 100 cells over [−0.5, 0.5] put the cube's faces on cell boundaries.
        var iou = WorldMetrics.OccupancyIoU(new ProceduralField(new[] { sphere }), new[] { cube }, resolution: 100, extent: 0.5);
        iou[0].Should().BeApproximately(Math.PI / 6, 0.005);
    }

    [Fact]
    public void Colour_error_is_zero_for_the_object_and_the_albedo_distance_for_another_colour()
    {
        var red = WorldObject.Parse("a red cube");
        var blue = WorldObject.Parse("a blue cube");
        var self = WorldMetrics.SurfaceColourError(new ProceduralField(new[] { red }), new[] { red }, points: 512);
        self[0].Should().BeLessThan(1e-3);
        var flat = WorldMetrics.SurfaceColourError(new ProceduralField(new[] { blue }, shaded: false), new[] { red }, points: 512, shaded: false);
        var (r1, g1, b1) = WorldVocabulary.Albedo("red");
        var (r2, g2, b2) = WorldVocabulary.Albedo("blue");
        flat[0].Should().BeApproximately((Math.Abs(r1 - r2) + Math.Abs(g1 - g2) + Math.Abs(b1 - b2)) / 3, 1e-3);
    }

    [Fact]
    public void Density_fields_are_thresholded()
    {
        var sphere = WorldObject.Parse("a red sphere");
        var field = new DensityFromSdf(new ProceduralField(new[] { sphere }));
        WorldMetrics.OccupancyIoU(field, new[] { sphere }, resolution: 48)[0].Should().BeGreaterThan(0.95);
    }

    [Fact]
    public void Retrieval_of_the_reference_views_themselves_is_perfect()
    {
        using var scope = NewDisposeScope();
        using var g = new TorchSharp.torch.Generator(1);
        var prompts = new[] { "a red cube", "a blue cube", "a red sphere" };
        var sets = prompts.ToDictionary(p => p, p => new ReferenceViews(rand(new long[] { 4, 3, 8, 8 }, generator: g), BuiltInPriorTests.CamerasAt(0, 90, 180, 270)));
        var images = cat(sets.Values.Select(v => v.Images).ToArray(), 0);
        var truth = prompts.SelectMany(p => Enumerable.Repeat(p, 4)).ToArray();
        using var lib = ReferenceLibrary.FromViews(sets);
        var result = WorldMetrics.RetrievalAtOne(images, truth, prompts, lib);
        result.RecallAtOne.Should().Be(1.0);
        result.Predicted.Should().Equal(Enumerable.Range(0, 12).Select(i => i / 4));
        // A wrong labelling scores zero.
        var shuffled = truth.Skip(4).Concat(truth.Take(4)).ToArray();
        WorldMetrics.RetrievalAtOne(images, shuffled, prompts, lib).RecallAtOne.Should().Be(0.0);
    }

    /// <summary>A NeRF-style view of an SDF field: raw density = −10⁵·sdf clipped to ±50, so softplus(raw) &gt; 10 just inside the surface.</summary>
    sealed class DensityFromSdf(ProceduralField inner) : IRadianceField
    {
        public FieldKind Kind => FieldKind.Density;
        public int Count => inner.Count;
        public double Radius => inner.Radius;
        public FieldSample Query(Tensor points)
        {
            var s = inner.Query(points);
            return new FieldSample(QueryGeometry(points), s.Features);
        }
        public Tensor QueryGeometry(Tensor points)
        {
            using var sdf = inner.QueryGeometry(points);
            return (sdf * -1e5).clamp(-50, 50);
        }
    }
}
