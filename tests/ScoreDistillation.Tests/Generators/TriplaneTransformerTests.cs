using FluentAssertions;
using ScoreDistillation.Generators;
using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Generators;

public sealed class TriplaneTransformerTests
{
    static TriplaneTransformer Reduced(ulong seed = 1) => new(TriplaneTransformerOptions.Reduced, CPU, new Generator(seed, CPU));

    static TextConditioning Text(int batch, int tokens, int dim, ulong seed)
    {
        var g = new Generator(seed, CPU);
        var prompts = Enumerable.Range(0, batch).Select(i => $"prompt {i}").ToArray();
        return new TextConditioning(prompts, randn([batch, tokens, dim], generator: g), randn([batch, dim], generator: g));
    }

    [Fact]
    public void ParameterCount_ReferenceConfiguration_MatchesScaleDreamer()
    {
        using var net = new TriplaneTransformer(TriplaneTransformerOptions.Reference, META);
        net.ParameterCount.Should().Be(120_564_480, "DL17k config (≈ 120.5 M)");
    }

    [Fact]
    public void StateDict_ReferenceConfiguration_HasUpstreamKeysAndShapes()
    {
        using var net = new TriplaneTransformer(TriplaneTransformerOptions.Reference, META);
        var sd = net.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        sd["space_generator.pos_embed"].Should().Equal(1, 3072, 768);
        sd["space_generator.layers.0.norm1.weight"].Should().Equal(768);
        sd["space_generator.layers.0.cross_attn.to_q.weight"].Should().Equal(768, 768);
        sd["space_generator.layers.0.cross_attn.to_k.weight"].Should().Equal(768, 1024);
        sd["space_generator.layers.0.cross_attn.to_v.weight"].Should().Equal(768, 1024);
        sd["space_generator.layers.0.cross_attn.to_out.0.weight"].Should().Equal(768, 768);
        sd["space_generator.layers.0.cross_attn.to_out.0.bias"].Should().Equal(768);
        sd.Should().NotContainKey("space_generator.layers.0.cross_attn.to_q.bias");
        sd["space_generator.layers.11.self_attn.to_k.weight"].Should().Equal(768, 768);
        sd["space_generator.layers.11.mlp.0.weight"].Should().Equal(3072, 768);
        sd["space_generator.layers.11.mlp.3.bias"].Should().Equal(768);
        sd["space_generator.norm.bias"].Should().Equal(768);
        sd["space_generator.deconv.weight"].Should().Equal(768, 32, 2, 2);
        sd["sdf_network.layers.4.weight"].Should().Equal(1, 64);
        sd["feature_network.layers.0.weight"].Should().Equal(64, 96);
        sd.Keys.Count(k => k.StartsWith("space_generator.layers.", StringComparison.Ordinal) && k.EndsWith("norm3.weight", StringComparison.Ordinal)).Should().Be(12);
    }

    [Fact]
    public void Generate_ReducedSize_HasExpectedShapes()
    {
        using var net = Reduced();
        using var text = Text(2, 5, 32, 3);
        using var scope = NewDisposeScope();
        var field = (TriplaneSdfField)net.Generate(text);
        field.Planes.shape.Should().Equal(2, 3, 8, 16, 16);
        field.Kind.Should().Be(FieldKind.SignedDistance);
        field.Radius.Should().Be(2.0);
        var s = field.Query(rand([2, 10, 3]) * 4 - 2);
        s.Geometry.shape.Should().Equal(2, 10, 1);
        s.Features.shape.Should().Equal(2, 10, 3);
        field.SampleFeatures(zeros([2, 4, 3])).shape.Should().Equal(2, 4, 24);
    }

    [Fact]
    public void SampleFeatures_ReturnsEachPlanesBilinearValue()
    {
        using var net = Reduced();
        using var scope = NewDisposeScope();
        var g = new Generator(5, CPU);
        const int C = 8, R = 16;
        var planes = randn([2, 3, C, R, R], generator: g);
        var field = net.CreateField(planes);
        static double Centre(int i) => 2.0 * ((i + 0.5) / R * 2 - 1); // world coordinate of texel centre i (radius 2)
        var cases = new (int ix, int iy, int iz)[] { (0, 0, 0), (3, 7, 12), (15, 1, 9), (8, 15, 2) };
        var pts = new List<float>();
        foreach (var (ix, iy, iz) in cases) pts.AddRange([(float)Centre(ix), (float)Centre(iy), (float)Centre(iz)]);
        // One more point half-way between x texels 4 and 5 (bilinear mean on XY and XZ; ZY unaffected).
        pts.AddRange([(float)((Centre(4) + Centre(5)) / 2), (float)Centre(6), (float)Centre(10)]);
        var p1 = tensor(pts.ToArray(), [1, cases.Length + 1, 3]);
        var points = cat([p1, p1.flip(1)], 0); // sample 1 sees the points in reverse order
        var f = field.SampleFeatures(points);
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < cases.Length; k++)
            {
                var (ix, iy, iz) = cases[k];
                int row = b == 0 ? k : cases.Length - k;
                var expected = cat([planes[b, 0, .., iy, ix], planes[b, 1, .., iz, ix], planes[b, 2, .., iy, iz]], 0);
                TensorAssert.Close(f[b, row], expected, 1e-5, 1e-6, $"sample {b}, point {k}");
            }
        var mid = 0.5 * (planes[0, 0, .., 6, 4] + planes[0, 0, .., 6, 5]);
        var midXz = 0.5 * (planes[0, 1, .., 10, 4] + planes[0, 1, .., 10, 5]);
        TensorAssert.Close(f[0, cases.Length], cat([mid, midXz, planes[0, 2, .., 6, 10]], 0), 1e-5, 1e-6, "half-texel point");
    }

    [Fact]
    public void GeneratePlanes_EqualsManualTransformerAndDeconvLayout()
    {
        // Written out by hand from the upstream module: pre-LN cross-attn / self-attn / GELU MLP, final LN, shared deconv per plane.
        var o = TriplaneTransformerOptions.Reduced with { Layers = 1, LowResolution = 2 };
        using var net = new TriplaneTransformer(o, CPU, new Generator(21, CPU));
        using var text = Text(1, 3, 32, 22);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var sd = net.Module.state_dict();
        Tensor P(string k) => sd["space_generator." + k];
        Tensor Ln(Tensor x, string k)
        {
            var mu = x.mean([-1L], keepdim: true);
            var var = (x - mu).square().mean([-1L], keepdim: true);
            return (x - mu) / (var + 1e-6).sqrt() * P(k + ".weight") + P(k + ".bias");
        }
        Tensor Attn(Tensor x, Tensor ctx, string k)
        {
            var q = x.matmul(P(k + ".to_q.weight").t());
            var kk = ctx.matmul(P(k + ".to_k.weight").t());
            var v = ctx.matmul(P(k + ".to_v.weight").t());
            int dh = o.InnerDim / o.Heads;
            var heads = new List<Tensor>();
            for (int h = 0; h < o.Heads; h++)
            {
                var qs = q[.., .., (h * dh)..((h + 1) * dh)];
                var ks = kk[.., .., (h * dh)..((h + 1) * dh)];
                var vs = v[.., .., (h * dh)..((h + 1) * dh)];
                heads.Add(qs.matmul(ks.transpose(1, 2)).div(Math.Sqrt(dh)).softmax(-1).matmul(vs));
            }
            return cat(heads, -1).matmul(P(k + ".to_out.0.weight").t()) + P(k + ".to_out.0.bias");
        }
        var x = P("pos_embed");
        x = x + Attn(Ln(x, "layers.0.norm1"), text.Tokens, "layers.0.cross_attn");
        var n2 = Ln(x, "layers.0.norm2");
        x = x + Attn(n2, n2, "layers.0.self_attn");
        var hmid = Ln(x, "layers.0.norm3").matmul(P("layers.0.mlp.0.weight").t()) + P("layers.0.mlp.0.bias");
        hmid = 0.5 * hmid * (1 + (hmid / Math.Sqrt(2)).erf());
        x = x + hmid.matmul(P("layers.0.mlp.3.weight").t()) + P("layers.0.mlp.3.bias");
        x = Ln(x, "norm");
        var w = P("deconv.weight"); // [D, C, 2, 2]
        int r = o.LowResolution;
        var expected = zeros([1, 3, o.PlaneChannels, 2 * r, 2 * r]);
        for (int p = 0; p < 3; p++)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++)
                {
                    var token = x[0, p * r * r + i * r + j]; // [D]
                    var patch = (token.view(-1, 1, 1, 1) * w).sum(0L); // [C, 2, 2]
                    expected[0, p, .., (2 * i)..(2 * i + 2), (2 * j)..(2 * j + 2)] = patch;
                }
        TensorAssert.Close(net.GeneratePlanes(text.Tokens), expected, 1e-4, 1e-5);
    }

    [Fact]
    public void BatchOfTwo_EqualsEachSampleAlone()
    {
        using var net = Reduced();
        using var text = Text(2, 5, 32, 5);
        using var scope = NewDisposeScope();
        var points = rand([2, 50, 3], generator: new Generator(9, CPU)) * 4 - 2;
        var both = net.GeneratePlanes(text.Tokens);
        var q2 = net.CreateField(both).Query(points);
        for (int b = 0; b < 2; b++)
        {
            var one = net.GeneratePlanes(text.Tokens[b..(b + 1)]);
            TensorAssert.Close(both[b..(b + 1)], one, 1e-5, 1e-5, $"planes {b}");
            var q = net.CreateField(one).Query(points[b..(b + 1)]);
            TensorAssert.Close(q2.Geometry[b..(b + 1)], q.Geometry, 1e-5, 1e-5, $"sdf {b}");
            TensorAssert.Close(q2.Features[b..(b + 1)], q.Features, 1e-5, 1e-5, $"features {b}");
        }
        TensorAssert.MaxAbsError(both[0], both[1]).Should().BeGreaterThan(1e-4, "different prompts give different planes");
    }

    [Fact]
    public void Query_AddsSphereBias()
    {
        using var net = Reduced();
        using var text = Text(1, 5, 32, 5);
        SdfGeneratorChecks.QueryAddsSphereBias(net, text, 0.8);
    }

    [Fact]
    public void Backward_ReachesEveryParameter()
    {
        using var net = Reduced();
        using var text = Text(2, 5, 32, 11);
        SdfGeneratorChecks.BackwardReachesEveryParameter(net, text);
    }

    [Fact]
    public void TrainingSteps_KeepLiveTensorCountFlat()
    {
        using var net = Reduced();
        using var text = Text(1, 5, 32, 11);
        SdfGeneratorChecks.TrainingStepsKeepLiveTensorCountFlat(net, text);
    }

    [Fact]
    public void RenderForwardBackward_64x64_ReachesGeneratorWithFlatMemory()
    {
        using var net = Reduced();
        using var text = Text(1, 5, 32, 13);
        SdfGeneratorChecks.RenderForwardBackward64x64(net, text);
    }

    [Fact]
    public void BadInputs_AreRejectedWithNamedShapes()
    {
        using var net = Reduced();
        using var scope = NewDisposeScope();
        var act = () => net.GeneratePlanes(zeros([1, 5, 31]));
        act.Should().Throw<ArgumentException>().WithMessage("*Text tokens must be [B, S, 32]*");
        var act2 = () => net.CreateField(zeros([1, 2, 8, 4, 4]));
        act2.Should().Throw<ArgumentException>().WithMessage("*Triplanes must be [B, 3, 8, H, W]*");
    }
}
