using FluentAssertions;
using ScoreDistillation.Distillers;
using ScoreDistillation.Generators;
using ScoreDistillation.Rendering;
using ScoreDistillation.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

public sealed class TrainerBatchAndEikonalTests
{
    /// <summary>s(p) = k·(‖p‖ − 0.3) with a trainable k: |∇s| = |k| everywhere but the origin.</summary>
    sealed class ScaledSphere(Tensor k) : IRadianceField
    {
        public FieldKind Kind => FieldKind.SignedDistance;
        public int Count => 1;
        public double Radius => 1.0;
        public FieldSample Query(Tensor points) => new(QueryGeometry(points), zeros(points.shape[0], points.shape[1], 3));
        public Tensor QueryGeometry(Tensor points) => (k * (points.norm(-1, keepdim: true) - 0.3));
    }

    [Fact]
    public void Numerical_eikonal_is_zero_for_a_true_sdf_and_measures_the_gradient_norm_otherwise()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(4);
        var pts = (rand(new long[] { 1, 2000, 3 }, generator: g) * 2 - 1) * 0.8;
        pts = pts.index_select(1, (pts.norm(-1)[0] > 0.05).nonzero().reshape(-1));
        var k = tensor(1.0f).requires_grad_(true);
        Regularizers.NumericalEikonal(new ScaledSphere(k), pts, 1e-3).item<float>().Should().BeLessThan(1e-4f);
        var k2 = tensor(3.0f).requires_grad_(true);
        var loss = Regularizers.NumericalEikonal(new ScaledSphere(k2), pts, 1e-3);
        loss.item<float>().Should().BeApproximately(4f, 0.05f, "(|∇s| − 1)² = (3 − 1)²");
        var dk = autograd.grad(new[] { loss }, new[] { k2 })[0];
        dk.item<float>().Should().BeApproximately(4f, 0.1f, "d/dk (k − 1)² = 2(k − 1) at k = 3");

        var density = new ProceduralDensity();
        ((Action)(() => Regularizers.NumericalEikonal(density, pts, 1e-3))).Should().Throw<ArgumentException>().WithMessage("*signed-distance*");
        ((Action)(() => Regularizers.NumericalEikonal(new ScaledSphere(k), pts, 0))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*step*");
        ((Action)(() => Regularizers.NumericalEikonal(new ScaledSphere(k), zeros(2, 5, 3), 1e-3))).Should().Throw<ArgumentException>().WithMessage("*[1, N, 3]*");
    }

    sealed class ProceduralDensity : IRadianceField
    {
        public FieldKind Kind => FieldKind.Density;
        public int Count => 1;
        public double Radius => 1.0;
        public FieldSample Query(Tensor points) => new(QueryGeometry(points), zeros(points.shape[0], points.shape[1], 3));
        public Tensor QueryGeometry(Tensor points) => zeros(points.shape[0], points.shape[1], 1);
    }

    static Trainer Build(ToyPixelPrior prior, InstantNgp gen, TrainerOptions options)
    {
        var renderer = new VolumeRenderer(new VolumeRendererOptions { ProposalSamples = 8, ImportanceSamples = 8, Far = 2.6, ComputeNormals = false });
        var d = new AsdDistiller(prior, new AsdOptions { Guidance = AsdOptions.Default.Guidance with { ViewDependent = null } }, new Generator(5, CPU));
        return new Trainer(gen, d, renderer, new PromptLibrary(new[] { "a", "bb" }, new[] { "a" }, new[] { "a" }), options);
    }

    static InstantNgp Sdf()
    {
        using var g = new Generator(3, CPU);
        return new InstantNgp(new InstantNgpOptions
        {
            Kind = FieldKind.SignedDistance,
            SdfSphereBias = 0.3,
            Radius = 1.0,
            Encoding = new HashGridOptions { Levels = 2, FeaturesPerLevel = 2, Log2TableSize = 10, BaseResolution = 4, PerLevelScale = 2 },
            Neurons = 8,
        }, g);
    }

    [Fact]
    public void Views_per_prompt_renders_that_many_cameras_per_prompt_and_enters_the_configuration()
    {
        using var prior = new ToyPixelPrior();
        using var gen = Sdf();
        var options = new TrainerOptions { Steps = 2, RenderSize = 8, PromptsPerStep = 2, ViewsPerPrompt = 3, SparsityWeight = 0, OpaqueWeight = 0, EikonalWeight = 0, Seed = 1 };
        using var trainer = Build(prior, gen, options);
        var step = trainer.TrainStep();
        step.Timesteps.Should().HaveCount(6, "2 prompts × 3 views, one timestep per image");
        step.Prompts.Should().HaveCount(2);
        trainer.Configuration()["batch"].Should().StartWith("2x3x1@8");
        ((Action)(() => (options with { ViewsPerPrompt = 0 }).Validate())).Should().Throw<ArgumentException>().WithMessage("*ViewsPerPrompt*");
    }

    [Fact]
    public void Finite_difference_eikonal_needs_no_normals_and_pulls_the_gradient_norm_to_one()
    {
        using var prior = new ToyPixelPrior();
        using var gen = Sdf();
        var options = new TrainerOptions
        {
            Steps = 30, RenderSize = 8, SparsityWeight = 0, OpaqueWeight = 0, Seed = 2,
            DistillationWeight = 0.0, EikonalWeight = 1.0, EikonalFiniteDifference = 1e-2, EikonalPoints = 512, EikonalExtent = 0.6,
            LearningRates = new Dictionary<string, double> { ["generator"] = 1e-2 },
        };
        using var trainer = Build(prior, gen, options);
        // Perturb the SDF so that |∇s| ≠ 1, then let the eikonal term alone repair it.
        using (no_grad()) foreach (var p in gen.parameters()) p.add_(randn_like(p) * 0.5);
        var steps = Enumerable.Range(0, 30).Select(_ => trainer.TrainStep()).ToArray();
        steps[0].Terms.Should().ContainKey("eikonal");
        steps.TakeLast(5).Average(s => s.Terms["eikonal"]).Should().BeLessThan(0.5 * steps.Take(5).Average(s => s.Terms["eikonal"]));
        trainer.Configuration()["weights"].Should().Contain("central differences h=0.01 at 512 points in ±0.6");
        ((Action)(() => (options with { EikonalFiniteDifference = 0 }).Validate())).Should().Throw<ArgumentException>().WithMessage("*EikonalFiniteDifference*");
        ((Action)(() => (options with { EikonalExtent = -1 }).Validate())).Should().Throw<ArgumentException>().WithMessage("*EikonalExtent*");
    }

    [Fact]
    public void Near_surface_eikonal_points_lie_much_closer_to_the_zero_level_set_than_uniform_ones()
    {
        using var scope = NewDisposeScope();
        using var prior = new ToyPixelPrior();
        using var gen = Sdf();
        var options = new TrainerOptions { Steps = 1, RenderSize = 8, Seed = 3, EikonalFiniteDifference = 1e-2, EikonalPoints = 256, EikonalExtent = 0.6 };
        using var uniform = Build(prior, gen, options);
        using var near = Build(prior, gen, options with { EikonalNearSurface = true });
        using var text = prior.EncodeText(new[] { "a" });
        var field = gen.Generate(text);
        double MeanAbsSdf(Trainer t)
        {
            var pts = t.EikonalPoints(field);
            pts.shape.Should().Equal(1, 256, 3);
            pts.abs().max().item<float>().Should().BeLessThanOrEqualTo(0.6f);
            using var ng = no_grad();
            return field.QueryGeometry(pts).abs().mean().item<float>();
        }
        double u = MeanAbsSdf(uniform), n = MeanAbsSdf(near);
        n.Should().BeLessThan(0.2 * u, $"the 256 nearest of 2048 candidates (uniform mean |sdf| {u:F3})");
        near.Configuration()["weights"].Should().Contain("nearest the surface");
    }
}
