using System.Text.Json;
using FluentAssertions;
using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Clip;

public class ClipProjectionModelTests
{
    [Fact]
    public void Tiny_vision_model_matches_transformers_on_every_output()
    {
        using var scope = NewDisposeScope();
        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_vision_tiny.safetensors"));
        string dir = ClipTestFolders.Create("clip-eval", "clip_vision_tiny.json", weights);
        try
        {
            using var model = CLIPVisionModelWithProjection.FromPretrained(dir);
            var pixels = data["__input__.pixel_values"];
            using var o = model.Encode(pixels, outputHiddenStates: true);
            const double tol = 1e-5;
            TensorAssert.Close(o.ImageEmbeds, data["__output__.image_embeds"], tol, tol, "image_embeds");
            TensorAssert.Close(nn.functional.normalize(o.ImageEmbeds, dim: -1), data["__output__.image_embeds_normalized"], tol, tol, "normalized");
            TensorAssert.Close(o.PoolerOutput, data["__output__.pooler_output"], tol, tol, "pooler_output");
            TensorAssert.Close(o.LastHiddenState, data["__output__.last_hidden_state"], tol, tol, "last_hidden_state");
            TensorAssert.Close(o.Embeddings!, data["__output__.embeddings"], tol, tol, "embeddings");
            for (int i = 0; i < 3; i++)
                TensorAssert.Close(o.HiddenStates[i], data[$"__output__.hidden_states.{i}"], tol, tol, $"hidden_states.{i}");
            TensorAssert.Close(model.forward(pixels), data["__output__.image_embeds"], tol, tol, "forward");
            Console.WriteLine($"vision: max abs error image_embeds {TensorAssert.MaxAbsError(o.ImageEmbeds, data["__output__.image_embeds"]):G3}, last_hidden_state {TensorAssert.MaxAbsError(o.LastHiddenState, data["__output__.last_hidden_state"]):G3}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Tiny_projected_text_model_matches_transformers_and_loads_from_a_full_clip_folder()
    {
        using var scope = NewDisposeScope();
        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_text_proj_tiny.safetensors"));
        var (vweights, _) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_vision_tiny.safetensors"));
        // A CLIPModel-style folder: both towers, logit_scale, legacy position_ids, nested text_config / vision_config.
        var extra = new Dictionary<string, Tensor>
        {
            ["logit_scale"] = tensor(4.6052f),
            ["text_model.embeddings.position_ids"] = arange(77, ScalarType.Int64).unsqueeze(0),
            ["vision_model.embeddings.position_ids"] = arange(17, ScalarType.Int64).unsqueeze(0),
        };
        string dir = ClipTestFolders.CreateFullClip("clipfull", weights, vweights, extra, "\"projection_dim\": 16, ");
        try
        {
            using var model = CLIPTextModelWithProjection.FromPretrained(dir);
            var ids = data["__input__.input_ids"];
            using var o = model.Encode(ids, outputHiddenStates: true);
            const double tol = 1e-5;
            TensorAssert.Close(o.TextEmbeds!, data["__output__.text_embeds"], tol, tol, "text_embeds");
            TensorAssert.Close(nn.functional.normalize(o.TextEmbeds!, dim: -1), data["__output__.text_embeds_normalized"], tol, tol, "normalized");
            TensorAssert.Close(o.PoolerOutput, data["__output__.pooler_output"], tol, tol, "pooler_output");
            TensorAssert.Close(o.LastHiddenState, data["__output__.last_hidden_state"], tol, tol, "last_hidden_state");
            for (int i = 0; i < 3; i++)
                TensorAssert.Close(o.HiddenStates[i], data[$"__output__.hidden_states.{i}"], tol, tol, $"hidden_states.{i}");
            using var vision = CLIPVisionModelWithProjection.FromPretrained(dir);
            vision.Config.ImageSize.Should().Be(32);
            Console.WriteLine($"text_proj: max abs error text_embeds {TensorAssert.MaxAbsError(o.TextEmbeds!, data["__output__.text_embeds"]):G3}");

            // The ids the evaluation script fed the model come out of our tokenizer too.
            var tok = ClipTokenizer.FromPretrained(Path.GetDirectoryName(TestVectors.PathOf("clip", "vocab.json"))!, ClipTokenizerOptions.StableDiffusion15);
            using var prompts = TestVectors.LoadJson("clip-eval", "clip_text_proj_tiny.json");
            var texts = prompts.RootElement.GetProperty("prompts").EnumerateArray().Select(p => p.GetProperty("encoded_text").GetString()!).ToArray();
            using var ours = tok.EncodeBatch(texts, truncate: false);
            ours.data<long>().ToArray().Should().Equal(ids.data<long>().ToArray());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void VitL14_builds_on_meta_with_official_names_shapes_and_parameter_count()
    {
        using var vision = new CLIPVisionModelWithProjection(ClipVisionConfig.VitL14, META);
        using var text = new CLIPTextModelWithProjection(ClipTextConfig.VitL14, META);
        long nv = vision.parameters().Sum(p => p.numel());
        long nt = text.parameters().Sum(p => p.numel());
        nv.Should().Be(303_966_208);
        nt.Should().Be(123_650_304);
        (nv + nt + 1).Should().Be(427_616_513, "openai/clip-vit-large-patch14 CLIPModel incl. logit_scale");

        // Key names: the tiny reference key list expanded to 24 layers, with ViT-L/14 shapes.
        using var doc = TestVectors.LoadJson("clip-eval", "clip_vision_tiny.json");
        var tinyKeys = doc.RootElement.GetProperty("weight_keys").EnumerateObject().Select(p => p.Name).ToList();
        var expected = tinyKeys.Where(k => !k.Contains(".layers.", StringComparison.Ordinal)).ToList();
        var layerKeys = tinyKeys.Where(k => k.Contains(".layers.0.", StringComparison.Ordinal)).ToList();
        for (int i = 0; i < 24; i++) expected.AddRange(layerKeys.Select(k => k.Replace(".layers.0.", $".layers.{i}.", StringComparison.Ordinal)));
        var sd = vision.state_dict();
        sd.Keys.Should().BeEquivalentTo(expected);
        sd["vision_model.embeddings.patch_embedding.weight"].shape.Should().Equal(1024, 3, 14, 14);
        sd["vision_model.embeddings.position_embedding.weight"].shape.Should().Equal(257, 1024);
        sd["vision_model.encoder.layers.23.mlp.fc1.weight"].shape.Should().Equal(4096, 1024);
        sd["visual_projection.weight"].shape.Should().Equal(768, 1024);
        text.state_dict()["text_projection.weight"].shape.Should().Equal(768, 768);
    }

    [Fact]
    public void Config_reader_takes_the_tower_of_a_full_clip_config_and_rejects_bad_values()
    {
        string dir = Directory.CreateTempSubdirectory("clipcfg").FullName;
        try
        {
            string p = Path.Combine(dir, "config.json");
            File.WriteAllText(p, "{\"projection_dim\": 768, \"text_config\": {\"hidden_size\": 768, \"num_attention_heads\": 12}, \"vision_config\": {\"hidden_size\": 1024, \"num_attention_heads\": 16, \"patch_size\": 14, \"hidden_act\": \"swish\"}}");
            var t = ClipTextConfig.FromFile(p);
            t.HiddenSize.Should().Be(768);
            t.ProjectionDim.Should().Be(768);
            var v = ClipVisionConfig.FromFile(p);
            v.PatchSize.Should().Be(14);
            var act = () => new CLIPVisionModelWithProjection(v, META);
            act.Should().Throw<InvalidDataException>().WithMessage("*hidden_act 'swish'*");
            var missing = () => ClipTextConfig.FromFile(Path.Combine(dir, "nope.json"));
            missing.Should().Throw<FileNotFoundException>().WithMessage("*nope.json*");
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class ClipEmbedderTests
{
    [Fact]
    public void Embedder_loads_a_full_clip_folder_and_reproduces_the_reference_embeddings()
    {
        using var scope = NewDisposeScope();
        var (tw, tdata) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_text_proj_tiny.safetensors"));
        var (vw, vdata) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip-eval", "clip_vision_tiny.safetensors"));
        string dir = ClipTestFolders.CreateFullClip("clipemb", tw, vw);
        try
        {
            File.Copy(TestVectors.PathOf("clip", "vocab.json"), Path.Combine(dir, "vocab.json"));
            File.Copy(TestVectors.PathOf("clip", "merges.txt"), Path.Combine(dir, "merges.txt"));

            using var embedder = ClipEmbedder.FromPretrained(dir);
            embedder.ImageSize.Should().Be(32);
            using var prompts = TestVectors.LoadJson("clip-eval", "clip_text_proj_tiny.json");
            var texts = prompts.RootElement.GetProperty("prompts").EnumerateArray().Select(p => p.GetProperty("encoded_text").GetString()!).ToArray();
            TensorAssert.Close(embedder.EmbedTexts(texts), tdata["__output__.text_embeds"], 1e-5, 1e-5, "text_embeds");
            TensorAssert.Close(embedder.EmbedImages(vdata["__input__.pixel_values"]), vdata["__output__.image_embeds"], 1e-5, 1e-5, "image_embeds");
        }
        finally { Directory.Delete(dir, true); }
    }
}
