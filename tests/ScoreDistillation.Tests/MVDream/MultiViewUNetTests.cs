using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.MVDream;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.MVDream;

public class MultiViewUNetTests
{
    internal static readonly MultiViewUNetConfig Tiny = new()
    {
        ModelChannels = 32,
        ChannelMult = new[] { 1, 2, 2 },
        AttentionResolutions = new[] { 2, 1 },
        NumResBlocks = 2,
        NumHeadChannels = 8,
        UseLinearInTransformer = true,
        TransformerDepth = 1,
        ContextDim = 32,
        CameraDim = 16,
    };

    internal static Dictionary<string, Tensor> Vectors() => TestVectors.LoadSafetensors("mvdream", "mvdream_unet_tiny.safetensors");

    internal static Dictionary<string, Tensor> WeightsWithCheckpointPrefix(Dictionary<string, Tensor> v) =>
        v.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)).ToDictionary(kv => LdmKeyMap.UNetPrefix + kv.Key, kv => kv.Value);

    [Fact]
    public void Tiny_multi_view_unet_matches_MVDream_with_cameras_without_cameras_and_with_one_view()
    {
        var v = Vectors();
        using var unet = MVDreamCheckpoint.LoadUNet(WeightsWithCheckpointPrefix(v), Tiny, "mvdream_unet_tiny");
        using var _ = no_grad();
        var x = v["__input__.x"];
        var t = v["__input__.timesteps"];
        var ctx = v["__input__.context"];
        var cam = v["__input__.camera"];

        TensorAssert.Close(unet.Forward(x, t, ctx, cam, 4), v["__output__.out"], rtol: 1e-4, atol: 1e-4, because: "camera, 4 views");
        TensorAssert.Close(unet.Forward(x, t, ctx, null, 4), v["__output__.out_camera_none"], rtol: 1e-4, atol: 1e-4, because: "no camera");
        TensorAssert.Close(unet.Forward(x, t, ctx, cam, 1), v["__output__.out_num_frames_1"], rtol: 1e-4, atol: 1e-4, because: "views attend alone");
        foreach (var tt in v.Values) tt.Dispose();
    }

    [Fact]
    public void With_one_view_and_no_camera_it_is_exactly_the_plain_UNet_on_the_same_weights()
    {
        var v = Vectors();
        using var mv = MVDreamCheckpoint.LoadUNet(WeightsWithCheckpointPrefix(v), Tiny, "mvdream_unet_tiny");
        using var plain = new UNet2DConditionModel(Tiny.ToUNetConfig());
        var sd = mv.state_dict().Where(kv => kv.Key.StartsWith("unet.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key["unet.".Length..], kv => kv.Value);
        plain.load_state_dict(sd, strict: true);
        plain.eval();
        using var _ = no_grad();
        var x = v["__input__.x"];
        var t = v["__input__.timesteps"];
        var ctx = v["__input__.context"];
        TensorAssert.Close(mv.Forward(x, t, ctx, null, 1), plain.Forward(x, t, ctx), rtol: 0, atol: 0);
        foreach (var tt in v.Values) tt.Dispose();
    }

    [Fact]
    public void A_batch_that_is_not_a_multiple_of_the_views_is_an_error()
    {
        using var unet = new MultiViewUNet(Tiny);
        using var x = zeros(6, 4, 16, 16);
        using var t = zeros(new long[] { 6 }, ScalarType.Int64);
        using var ctx = zeros(6, 77, 32);
        var act = () => unet.Forward(x, t, ctx, null, 4);
        act.Should().Throw<ArgumentException>().WithMessage("*batch 6*multiple*4 views*");
    }

    [Fact]
    public void Missing_and_misshaped_checkpoint_keys_are_named()
    {
        var v = Vectors();
        var sd = WeightsWithCheckpointPrefix(v);
        sd.Remove(LdmKeyMap.UNetPrefix + "camera_embed.0.weight");
        sd[LdmKeyMap.UNetPrefix + "out.2.bias"] = zeros(5);
        sd[LdmKeyMap.UNetPrefix + "label_emb.0.weight"] = zeros(2);
        var act = () => MVDreamCheckpoint.LoadUNet(sd, Tiny, "broken.pt");
        act.Should().Throw<CheckpointException>()
            .WithMessage("*broken.pt*model.diffusion_model.out.2.bias*expected [4], found [5]*missing keys (1): model.diffusion_model.camera_embed.0.weight*unexpected keys (1): model.diffusion_model.label_emb.0.weight*");
        foreach (var tt in v.Values) tt.Dispose();
    }

    [Fact]
    public void Meta_build_of_sd_v21_base_4view_has_the_official_names_shapes_and_parameter_count()
    {
        using var unet = new MultiViewUNet(MultiViewUNetConfig.SdV21Base4View, device: torch.META);
        long count = unet.parameters().Sum(p => p.numel());
        count.Should().Be(865_910_724L + (16 * 1280 + 1280) + (1280 * 1280 + 1280), "SD 2.1-base UNet plus the camera MLP");
        var shapes = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var official = LdmKeyMap.ForMultiViewUNet(unet).ToDictionary(m => m.CheckpointKey, m => shapes[m.ModelKey]);
        official.Should().HaveCount(shapes.Count);
        official.Keys.Should().OnlyHaveUniqueItems();
        var expected = new Dictionary<string, long[]>
        {
            ["model.diffusion_model.time_embed.0.weight"] = new long[] { 1280, 320 },
            ["model.diffusion_model.camera_embed.0.weight"] = new long[] { 1280, 16 },
            ["model.diffusion_model.camera_embed.2.weight"] = new long[] { 1280, 1280 },
            ["model.diffusion_model.input_blocks.0.0.weight"] = new long[] { 320, 4, 3, 3 },
            ["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] = new long[] { 320, 320 },
            ["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = new long[] { 320, 1024 },
            ["model.diffusion_model.input_blocks.3.0.op.weight"] = new long[] { 320, 320, 3, 3 },
            ["model.diffusion_model.input_blocks.4.0.skip_connection.weight"] = new long[] { 640, 320, 1, 1 },
            ["model.diffusion_model.input_blocks.11.0.out_layers.3.weight"] = new long[] { 1280, 1280, 3, 3 },
            ["model.diffusion_model.middle_block.1.proj_in.weight"] = new long[] { 1280, 1280 },
            ["model.diffusion_model.middle_block.2.emb_layers.1.weight"] = new long[] { 1280, 1280 },
            ["model.diffusion_model.output_blocks.2.1.conv.weight"] = new long[] { 1280, 1280, 3, 3 },
            ["model.diffusion_model.output_blocks.5.2.conv.weight"] = new long[] { 1280, 1280, 3, 3 },
            ["model.diffusion_model.output_blocks.8.2.conv.weight"] = new long[] { 640, 640, 3, 3 },
            ["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight"] = new long[] { 2560, 320 },
            ["model.diffusion_model.output_blocks.11.0.skip_connection.weight"] = new long[] { 320, 640, 1, 1 },
            ["model.diffusion_model.out.2.weight"] = new long[] { 4, 320, 3, 3 },
        };
        foreach (var (k, s) in expected)
        {
            official.Should().ContainKey(k);
            official[k].Should().Equal(s, k);
        }
    }

    [Fact]
    public void Every_tiny_checkpoint_key_has_exactly_one_module_parameter()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestVectors.PathOf("mvdream", "mvdream_unet_tiny.json")));
        using var unet = new MultiViewUNet(Tiny, device: torch.META);
        var ours = LdmKeyMap.ForMultiViewUNet(unet, prefix: "").ToDictionary(m => m.CheckpointKey, m => unet.state_dict()[m.ModelKey].shape);
        var theirs = doc.RootElement.GetProperty("weight_keys").EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(e => e.GetInt64()).ToArray());
        ours.Keys.Should().BeEquivalentTo(theirs.Keys);
        foreach (var (k, s) in theirs) ours[k].Should().Equal(s, k);
    }
}
