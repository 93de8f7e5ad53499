using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Generators.Conv3D;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

public sealed class Conv3DNetTests
{
    static Conv3DNet Reduced(ulong seed = 1, VoxelNoiseMode mode = VoxelNoiseMode.Random)
    {
        var net = new Conv3DNet(Conv3DNetOptions.Reduced with { NoiseMode = mode }, CPU, new Generator(seed, CPU), new Generator(seed + 100, CPU));
        // Learned noise strengths start at 0; make them non-zero so the tests exercise the noise path.
        using (no_grad())
            foreach (var (name, p) in net.Module.named_parameters())
                if (name.EndsWith("noise_strength", StringComparison.Ordinal)) p.fill_(0.3);
        return net;
    }

    static TextConditioning Text(int batch, int dim, ulong seed)
    {
        var g = new Generator(seed, CPU);
        var prompts = Enumerable.Range(0, batch).Select(i => $"prompt {i}").ToArray();
        return new TextConditioning(prompts, randn([batch, 3, dim], generator: g), randn([batch, dim], generator: g));
    }

    [Fact]
    public void ParameterCount_ReferenceConfigurations_MatchScaleDreamer()
    {
        using (var m1 = new Conv3DNet(Conv3DNetOptions.Reference, META))
            m1.ParameterCount.Should().Be(88_686_923, "DF415/AT2520 config (≈ 88.7 M)");
        using var m2 = new Conv3DNet(Conv3DNetOptions.ReferenceLarge, META);
        m2.ParameterCount.Should().Be(144_798_155, "CP100k config (≈ 144.8 M)");
    }

    [Fact]
    public void StateDict_ReferenceConfiguration_HasUpstreamKeysAndShapes()
    {
        using var net = new Conv3DNet(Conv3DNetOptions.Reference, META);
        var sd = net.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        sd["space_generator.mapping.layers.0.weight"].Should().Equal(256, 64);
        sd["space_generator.mapping.layers.1.weight"].Should().Equal(256, 256);
        sd["space_generator.mapping.embed.weight"].Should().Equal(256, 1280);
        sd["space_generator.mapping.w_avg"].Should().Equal(256);
        sd["space_generator.synthesis.first_block.const"].Should().Equal(512, 4, 4, 4);
        sd["space_generator.synthesis.first_block.conv1.weight"].Should().Equal(512, 512, 3, 3, 3);
        sd["space_generator.synthesis.first_block.torgb.weight"].Should().Equal(32, 512, 1, 1, 1);
        sd["space_generator.synthesis.blocks.2.conv0.weight"].Should().Equal(256, 512, 3, 3, 3);
        sd["space_generator.synthesis.blocks.3.const_bias"].Should().Equal(128, 64, 64, 64);
        sd["space_generator.synthesis.blocks.4.conv1.noise_const"].Should().Equal(128, 128, 128);
        sd["space_generator.synthesis.blocks.4.conv1.affine.bias"].Should().Equal(64);
        sd["space_generator.synthesis.blocks.4.conv0.noise_strength"].Should().Equal(1);
        sd.Should().NotContainKey("space_generator.synthesis.blocks.4.const_bias", "no constant bias above 64³");
        sd["sdf_network.layers.0.weight"].Should().Equal(64, 32);
        sd["sdf_network.layers.2.weight"].Should().Equal(1, 64);
        sd["feature_network.layers.2.weight"].Should().Equal(3, 64);
        sd["bbox"].Should().Equal(2, 3);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ModulatedConv3d_EqualsPerSampleFormula(bool demodulate)
    {
        var g = new Generator(7, CPU);
        using var scope = NewDisposeScope();
        var x = randn([3, 4, 5, 6, 7], ScalarType.Float64, generator: g);
        var weight = randn([5, 4, 3, 3, 3], ScalarType.Float64, generator: g);
        var styles = randn([3, 4], ScalarType.Float64, generator: g);
        var actual = StyleGan3DOps.ModulatedConv3d(x, weight, styles, 1, demodulate);

        var expected = new List<Tensor>();
        for (int b = 0; b < 3; b++)
        {
            var wb = weight * styles[b].view(1, 4, 1, 1, 1);
            if (demodulate)
            {
                var d = (wb.square().sum([1L, 2, 3, 4]) + 1e-8).rsqrt();
                wb = wb * d.view(5, 1, 1, 1, 1);
            }
            expected.Add(nn.functional.conv3d(x[b].unsqueeze(0), wb, padding: [1, 1, 1]));
        }
        TensorAssert.Close(actual, cat(expected, 0), 1e-10, 1e-10);
    }

    [Fact]
    public void Synthesize_ReducedSize_HasExpectedShapes()
    {
        using var net = Reduced();
        using var text = Text(2, 32, 3);
        using var scope = NewDisposeScope();
        var field = (VoxelSdfField)net.Generate(text);
        field.Volume.shape.Should().Equal(2, 8, 16, 16, 16);
        field.Kind.Should().Be(FieldKind.SignedDistance);
        field.Radius.Should().Be(2.0);
        field.Count.Should().Be(2);
        var s = field.Query(rand([2, 10, 3]) * 4 - 2);
        s.Geometry.shape.Should().Equal(2, 10, 1);
        s.Features.shape.Should().Equal(2, 10, 3);
        field.QueryGeometry(zeros([2, 5, 3])).shape.Should().Equal(2, 5, 1);
        net.VoxelNoiseShapes(2).Select(s => s[2]).Should().Equal(4, 8, 8, 16, 16);
    }

    [Fact]
    public void BatchOfTwo_EqualsEachSampleAlone()
    {
        using var net = Reduced();
        using var text = Text(2, 32, 5);
        using var scope = NewDisposeScope();
        var z = net.SampleLatent(2);
        var noise = net.SampleVoxelNoise(2);
        var points = rand([2, 50, 3], generator: new Generator(9, CPU)) * 4 - 2;
        var both = net.Synthesize(text.Pooled, z, noise);
        var fieldBoth = net.CreateField(both).Query(points);
        for (int b = 0; b < 2; b++)
        {
            var one = net.Synthesize(text.Pooled[b..(b + 1)], z[b..(b + 1)], noise.Select(n => n[b..(b + 1)]).ToArray());
            TensorAssert.Close(both[b..(b + 1)], one, 1e-5, 1e-5, $"volume {b}");
            var q = net.CreateField(one).Query(points[b..(b + 1)]);
            TensorAssert.Close(fieldBoth.Geometry[b..(b + 1)], q.Geometry, 1e-5, 1e-5, $"sdf {b}");
            TensorAssert.Close(fieldBoth.Features[b..(b + 1)], q.Features, 1e-5, 1e-5, $"features {b}");
        }
    }

    [Fact]
    public void Noise_IsUsedAndReproducible()
    {
        using var text = Text(1, 32, 5);
        using var scope = NewDisposeScope();
        using var a = Reduced(1, VoxelNoiseMode.Const);
        using var z = a.SampleLatent(1);
        TensorAssert.Close(a.Synthesize(text.Pooled, z), a.Synthesize(text.Pooled, z), 0, 0, "const noise is deterministic");
        using var r = Reduced(1, VoxelNoiseMode.Random);
        var v1 = r.Synthesize(text.Pooled, z);
        var v2 = r.Synthesize(text.Pooled, z);
        TensorAssert.MaxAbsError(v1, v2).Should().BeGreaterThan(1e-4, "fresh random noise changes the volume");
        using var r2 = Reduced(1, VoxelNoiseMode.Random);
        TensorAssert.Close(r2.Synthesize(text.Pooled, z), v1, 0, 0, "same seeds reproduce");
    }

    [Fact]
    public void SampleFeatures_IsTrilinearWithGridSampleAxisOrder_AndNeverMixesBatch()
    {
        using var net = Reduced();
        using var scope = NewDisposeScope();
        // Channel 0 = normalised x of voxel centres along W, 1 = y along H, 2 = z along D; sample 1 is negated.
        long d = 4, h = 6, w = 8;
        static Tensor Centres(long n) => (arange(n, ScalarType.Float32) + 0.5f) / n * 2 - 1;
        var vol = zeros([2, 8, d, h, w]);
        vol[0, 0] = Centres(w).view(1, 1, w).expand(d, h, w);
        vol[0, 1] = Centres(h).view(1, h, 1).expand(d, h, w);
        vol[0, 2] = Centres(d).view(d, 1, 1).expand(d, h, w);
        vol[1] = -vol[0];
        var field = net.CreateField(vol);
        var points = (rand([2, 40, 3], generator: new Generator(3, CPU)) * 2 - 1) * 1.4; // normalised |p| ≤ 0.7, inside the centre hull
        var f = field.SampleFeatures(points);
        f.shape.Should().Equal(2, 40, 8);
        TensorAssert.Close(f[0, .., 0..3], points[0] / 2, 1e-5, 1e-6, "sample 0");
        TensorAssert.Close(f[1, .., 0..3], -points[1] / 2, 1e-5, 1e-6, "sample 1");
    }

    [Fact]
    public void RepeatInterleave_GivesOneFieldPerView()
    {
        using var net = Reduced();
        using var text = Text(2, 32, 5);
        using var scope = NewDisposeScope();
        var field = (VoxelSdfField)net.Generate(text);
        var views = field.RepeatInterleave(3);
        views.Count.Should().Be(6);
        var points = rand([2, 7, 3]) * 4 - 2;
        var expected = field.QueryGeometry(points).repeat_interleave(3, 0);
        TensorAssert.Close(views.QueryGeometry(points.repeat_interleave(3, 0)), expected, 1e-6, 1e-6);
    }

    [Fact]
    public void Query_AddsSphereBias()
    {
        using var net = Reduced();
        using var text = Text(1, 32, 5);
        SdfGeneratorChecks.QueryAddsSphereBias(net, text, 0.8);
    }

    [Fact]
    public void Backward_ReachesEveryParameter()
    {
        using var net = Reduced();
        using var text = Text(2, 32, 11);
        SdfGeneratorChecks.BackwardReachesEveryParameter(net, text);
        net.ParameterGroups["generator"].Count.Should().Be(net.Module.parameters().Count());
    }

    [Fact]
    public void TrainingSteps_KeepLiveTensorCountFlat()
    {
        using var net = Reduced();
        using var text = Text(1, 32, 11);
        SdfGeneratorChecks.TrainingStepsKeepLiveTensorCountFlat(net, text);
    }

    [Fact]
    public void RenderForwardBackward_64x64_ReachesGeneratorWithFlatMemory()
    {
        using var net = Reduced();
        using var text = Text(1, 32, 13);
        SdfGeneratorChecks.RenderForwardBackward64x64(net, text);
    }

    [Fact]
    public void BadInputs_AreRejectedWithNamedShapes()
    {
        using var net = Reduced();
        using var scope = NewDisposeScope();
        var act = () => net.Synthesize(zeros([1, 31]), zeros([1, 8]));
        act.Should().Throw<ArgumentException>().WithMessage("*Pooled text*[1, 32]*");
        var act2 = () => net.CreateField(zeros([1, 8, 4, 4, 4])).Query(zeros([2, 3, 3]));
        act2.Should().Throw<ArgumentException>().WithMessage("*Points must be [1, N, 3]*");
    }
}
