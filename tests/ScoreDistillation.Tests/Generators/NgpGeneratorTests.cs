using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

public class NgpGeneratorTests
{
    static TextConditioning Text(int b, int dims, long seed)
    {
        var g = new Generator((ulong)seed);
        return new TextConditioning(Enumerable.Range(0, b).Select(i => $"prompt {i}").ToArray(),
            randn(new long[] { b, 4, dims }, generator: g), randn(new long[] { b, dims }, generator: g));
    }

    /// <summary>tcnn entry count of one hash-grid configuration, written out from the config.</summary>
    static long HashGridParams(int levels, int features, int log2T, int baseRes, double scale)
    {
        long total = 0;
        for (int l = 0; l < levels; l++)
        {
            double s = baseRes * Math.Pow(scale, l) - 1;
            long res = (long)Math.Ceiling(s) + 1;
            long cells = res * res * res;
            total += Math.Min((cells + 7) / 8 * 8, 1L << log2T);
        }
        return total * features;
    }

    [Fact]
    public void HyperInstantNgpParameterCountEqualsReferenceConfiguration()
    {
        using var gen = new HyperInstantNgp(generator: new Generator(0));
        // Geometry: hash grid 16 × 2, 2^19, base 16, scale 1.447269237440378 (levels 0–4 dense: 16³, 24³, 34³, 49³→117656, 71³→357912).
        long grid = HashGridParams(16, 2, 19, 16, 1.447269237440378);
        grid.Should().Be(2 * (4096 + 13824 + 39304 + 117656 + 357912 + 11L * 524288));
        // Hypernetwork 1024→64 (no bias), LayerNorm(64), 64→4352 (+bias); 4352 = 32·64 + 64·1 + 32·64 + 64·3.
        long hyper = 1024 * 64 + 2 * 64 + 64 * 4352 + 4352;
        // Background: hash grid 16 × 2 at 16³ every level; hypernetwork 1024→64→(32·64 + 64·3 = 2240).
        long bgGrid = HashGridParams(16, 2, 19, 16, 1.0);
        long bgHyper = 1024 * 64 + 2 * 64 + 64 * 2240 + 2240;

        long Count(IEnumerable<TorchSharp.Modules.Parameter> ps) => ps.Sum(p => p.numel());
        Count(gen.Geometry.Encoding.parameters()).Should().Be(grid);
        Count(gen.Geometry.HyperNetwork.parameters()).Should().Be(hyper);
        Count(gen.ParameterGroups["generator"]).Should().Be(grid + hyper);
        Count(gen.ParameterGroups["background"]).Should().Be(bgGrid + bgHyper);
        Count(gen.parameters()).Should().Be(grid + hyper + bgGrid + bgHyper).And.Be(13_290_800);
        gen.Geometry.HyperNetwork.OutputDims.Should().Be(4352);
    }

    [Fact]
    public void StateDictKeysMirrorTheReference()
    {
        using var gen = new HyperInstantNgp(generator: new Generator(0));
        gen.state_dict().Keys.Should().BeEquivalentTo(
            "geometry.encoding.params",
            "geometry.hypernet.layers.0.weight", "geometry.hypernet.layers.1.weight", "geometry.hypernet.layers.1.bias",
            "geometry.hypernet.layers.3.weight", "geometry.hypernet.layers.3.bias",
            "background.encoding.params",
            "background.hypernet.layers.0.weight", "background.hypernet.layers.1.weight", "background.hypernet.layers.1.bias",
            "background.hypernet.layers.3.weight", "background.hypernet.layers.3.bias");
        using var ngp = new InstantNgp(new InstantNgpOptions { Kind = FieldKind.SignedDistance, Encoding = Tiny }, new Generator(0));
        ngp.state_dict().Keys.Should().BeEquivalentTo("encoding.params", "sdf_network.layers.0.weight", "sdf_network.layers.2.weight",
            "feature_network.layers.0.weight", "feature_network.layers.2.weight");
    }

    [Fact]
    public void HyperNetworkInitialisation()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(generator: new Generator(0));
        var sd = gen.state_dict();
        sd["geometry.hypernet.layers.3.bias"].abs().max().item<float>().Should().Be(0);
        sd["geometry.hypernet.layers.1.weight"].eq(1).all().item<bool>().Should().BeTrue();
        // xavier-normal gain 1: std = √(2/(fan_in + fan_out)).
        sd["geometry.hypernet.layers.3.weight"].std().item<float>().Should().BeApproximately((float)Math.Sqrt(2.0 / (64 + 4352)), 1e-3f);
        sd["geometry.hypernet.layers.0.weight"].std().item<float>().Should().BeApproximately((float)Math.Sqrt(2.0 / (1024 + 64)), 1e-3f);
    }

    static readonly HashGridOptions Tiny = new() { Levels = 4, FeaturesPerLevel = 2, Log2TableSize = 12, BaseResolution = 4, PerLevelScale = 2.0 };

    static HyperInstantNgpOptions SmallHyper => new()
    {
        Encoding = Tiny,
        TextDims = 16,
        Background = new TextConditionedHashGridBackgroundOptions { Encoding = Tiny with { PerLevelScale = 1.0 }, TextDims = 16 },
    };

    [Fact]
    public void HyperInstantNgpShapesAndSphereBias()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(SmallHyper, new Generator(0));
        using var text = Text(2, 16, 1);
        var field = gen.Generate(text);
        field.Kind.Should().Be(FieldKind.SignedDistance);
        field.Count.Should().Be(2);
        field.Radius.Should().Be(2.0);
        var pts = rand(new long[] { 2, 50, 3 }, generator: new Generator(2)).mul_(4).sub_(2);
        var s = field.Query(pts);
        s.Geometry.shape.Should().Equal(2L, 50L, 1L);
        s.Features.shape.Should().Equal(2L, 50L, 3L);
        // With a near-zero hash table the field is the sphere bias ‖p‖ − 0.5.
        var bias = linalg.vector_norm(pts, 2, new long[] { -1 }, keepdim: true).sub(0.5);
        TensorAssert.Close(s.Geometry, bias, atol: 1e-3, rtol: 0);
        TensorAssert.Close(field.QueryGeometry(pts), s.Geometry, atol: 1e-6);
        var bg = gen.Background!.Evaluate(nn.functional.normalize(pts, dim: -1), text.Pooled);
        bg.shape.Should().Equal(2L, 50L, 3L);
        (bg.min().item<float>() > 0 && bg.max().item<float>() < 1).Should().BeTrue();
        var act = () => field.Query(rand(3, 10, 3));
        act.Should().Throw<ArgumentException>().WithMessage("*[2, N, 3]*");
    }

    [Fact]
    public void GradientsReachEveryHyperInstantNgpParameter()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(SmallHyper, new Generator(0));
        using var text = Text(2, 16, 1);
        var field = gen.Generate(text);
        var pts = rand(new long[] { 2, 200, 3 }, generator: new Generator(2)).mul_(2).sub_(1);
        var s = field.Query(pts);
        var bg = gen.Background!.Evaluate(nn.functional.normalize(pts, dim: -1), text.Pooled);
        s.Geometry.sum().add(s.Features.square().sum()).add(bg.sum()).backward();
        foreach (var (name, p) in gen.named_parameters())
        {
            p.grad.Should().NotBeNull(name);
            p.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, name);
        }
        gen.ParameterGroups.Keys.Should().BeEquivalentTo("generator", "background");
    }

    [Theory]
    [InlineData(FieldKind.Density)]
    [InlineData(FieldKind.SignedDistance)]
    public void GradientsReachEveryInstantNgpParameter(FieldKind kind)
    {
        using var scope = NewDisposeScope();
        using var ngp = new InstantNgp(new InstantNgpOptions { Kind = kind, Encoding = Tiny, SdfSphereBias = kind == FieldKind.SignedDistance ? 0.5 : null }, new Generator(0));
        using var text = Text(2, 16, 1);
        var field = ngp.Generate(text);
        field.Kind.Should().Be(kind);
        var pts = rand(new long[] { 2, 200, 3 }, generator: new Generator(2)).mul_(2).sub_(1);
        var s = field.Query(pts);
        s.Geometry.shape.Should().Equal(2L, 200L, 1L);
        s.Features.shape.Should().Equal(2L, 200L, 3L);
        s.Geometry.sum().add(s.Features.sum()).backward();
        foreach (var (name, p) in ngp.named_parameters())
        {
            p.grad.Should().NotBeNull(name);
            p.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, name);
        }
        ngp.Background.Should().BeNull();
        ngp.ParameterGroups["generator"].Sum(p => p.numel()).Should().Be(ngp.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void DensityBlobBiasMatchesThreestudio()
    {
        using var scope = NewDisposeScope();
        var o = new InstantNgpOptions { Encoding = Tiny };
        using var ngp = new InstantNgp(o, new Generator(0));
        using (no_grad()) ngp.Encoding.Table.zero_();
        using var text = Text(1, 16, 1);
        var pts = rand(new long[] { 1, 20, 3 }, generator: new Generator(2)).mul_(2).sub_(1);
        var geo = ngp.Generate(text).QueryGeometry(pts);
        var expected = linalg.vector_norm(pts, 2, new long[] { -1 }, keepdim: true).div(0.5).neg().add(1).mul(10);
        TensorAssert.Close(geo, expected, atol: 1e-5);
    }

    [Fact]
    public void TwoPromptsInOneBatchEqualSeparateEvaluation()
    {
        using var scope = NewDisposeScope();
        using var gen = new HyperInstantNgp(SmallHyper, new Generator(0));
        using (no_grad()) gen.Geometry.Encoding.Table.copy_(randn(gen.Geometry.Encoding.Table.shape, generator: new Generator(9)).mul_(0.5));
        using var text = Text(2, 16, 1);
        var pts = rand(new long[] { 2, 64, 3 }, generator: new Generator(2)).mul_(4).sub_(2);
        var dirs = nn.functional.normalize(randn(new long[] { 2, 64, 3 }, generator: new Generator(3)), dim: -1);
        var both = gen.Generate(text).Query(pts);
        var bgBoth = gen.Background!.Evaluate(dirs, text.Pooled);
        for (int i = 0; i < 2; i++)
        {
            using var one = text.Select(new[] { i });
            var single = gen.Generate(one).Query(pts.narrow(0, i, 1));
            TensorAssert.Close(both.Geometry.narrow(0, i, 1), single.Geometry, atol: 1e-6);
            TensorAssert.Close(both.Features.narrow(0, i, 1), single.Features, atol: 1e-6);
            TensorAssert.Close(bgBoth.narrow(0, i, 1), gen.Background.Evaluate(dirs.narrow(0, i, 1), one.Pooled), atol: 1e-6);
        }
        // Different prompts give different fields.
        TensorAssert.MaxAbsError(both.Features.narrow(0, 0, 1), gen.Generate(text.Select(new[] { 1 })).Query(pts.narrow(0, 0, 1)).Features)
            .Should().BeGreaterThan(1e-4);
    }
}
