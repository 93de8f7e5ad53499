using FluentAssertions;
using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Clip;

public class ClipTextModelTests
{
    [Theory]
    [InlineData("clip_text_tiny_quickgelu")]
    [InlineData("clip_text_tiny_gelu")]
    public void Tiny_text_models_match_transformers_on_every_output(string name)
    {
        using var scope = NewDisposeScope();
        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip", name + ".safetensors"));
        string dir = ClipTestFolders.Create("clip", name + ".json", weights);
        try
        {
            using var model = CLIPTextModel.FromPretrained(dir);
            var ids = data["__input__.input_ids"];
            using var output = model.Encode(ids, outputHiddenStates: true);
            const double tol = 1e-5;
            TensorAssert.Close(output.LastHiddenState, data["__output__.last_hidden_state"], tol, tol, "last_hidden_state");
            TensorAssert.Close(output.PoolerOutput, data["__output__.pooler_output"], tol, tol, "pooler_output");
            output.HiddenStates.Should().HaveCount(3);
            for (int i = 0; i < 3; i++)
                TensorAssert.Close(output.HiddenStates[i], data[$"__output__.hidden_states.{i}"], tol, tol, $"hidden_states.{i}");
            TensorAssert.Close(output.PenultimateHiddenState!, data["__output__.penultimate_hidden_state"], tol, tol, "penultimate");
            using var normed = model.ApplyFinalLayerNorm(output.PenultimateHiddenState!);
            TensorAssert.Close(normed, data["__output__.penultimate_final_layer_norm"], tol, tol, "penultimate_final_layer_norm");
            using var viaForward = model.forward(ids);
            TensorAssert.Close(viaForward, data["__output__.last_hidden_state"], tol, tol, "forward");
            Console.WriteLine($"{name}: max abs error last_hidden_state {TensorAssert.MaxAbsError(output.LastHiddenState, data["__output__.last_hidden_state"]):G3}, pooler {TensorAssert.MaxAbsError(output.PoolerOutput, data["__output__.pooler_output"]):G3}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Parameter_names_equal_the_transformers_keys()
    {
        using var doc = TestVectors.LoadJson("clip", "clip_text_tiny_quickgelu.json");
        var expected = doc.RootElement.GetProperty("weight_keys").EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(x => x.GetInt64()).ToArray());
        var config = System.Text.Json.JsonSerializer.Deserialize<ClipTextConfig>(doc.RootElement.GetProperty("config").GetRawText())!;
        using var model = new CLIPTextModel(config, META);
        var actual = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        actual.Keys.Should().BeEquivalentTo(expected.Keys);
        foreach (var (k, shape) in expected) actual[k].Should().Equal(shape, k);
    }

    [Fact]
    public void Loader_accepts_legacy_position_ids_and_pytorch_bin_and_names_bad_keys_and_shapes()
    {
        using var scope = NewDisposeScope();
        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip", "clip_text_tiny_gelu.safetensors"));
        var withBuffer = new Dictionary<string, Tensor>(weights) { ["text_model.embeddings.position_ids"] = arange(77, ScalarType.Int64).unsqueeze(0) };
        string dir = ClipTestFolders.Create("clip", "clip_text_tiny_gelu.json", withBuffer);
        try
        {
            using (var m = CLIPTextModel.FromPretrained(dir))
                TensorAssert.Close(m.forward(data["__input__.input_ids"]), data["__output__.last_hidden_state"], 1e-5, 1e-5);

            // pytorch_model.bin (zip pickle) loads the same weights.
            File.Delete(Path.Combine(dir, "model.safetensors"));
            string other = ClipTestFolders.Create("clip", "clip_text_tiny_gelu.json", weights);
            using (var tmp = CLIPTextModel.FromPretrained(other))
                tmp.save_py(Path.Combine(dir, "pytorch_model.bin"));
            Directory.Delete(other, true);
            using (var m = CLIPTextModel.FromPretrained(dir))
                TensorAssert.Close(m.forward(data["__input__.input_ids"]), data["__output__.last_hidden_state"], 1e-5, 1e-5, "from .bin");
            File.Delete(Path.Combine(dir, "pytorch_model.bin"));

            var missing = new Dictionary<string, Tensor>(weights);
            missing.Remove("text_model.final_layer_norm.bias");
            missing["text_model.encoder.layers.0.mlp.fc1.weight"] = zeros(3, 3);
            missing["text_model.surprise"] = zeros(1);
            ClipTestFolders.WriteSafetensors(Path.Combine(dir, "model.safetensors"), missing);
            var act = () => CLIPTextModel.FromPretrained(dir);
            act.Should().Throw<InvalidDataException>()
                .Where(e => e.Message.Contains("missing keys (1): text_model.final_layer_norm.bias")
                            && e.Message.Contains("unexpected keys (1): text_model.surprise")
                            && e.Message.Contains("text_model.encoder.layers.0.mlp.fc1.weight: checkpoint [3, 3] vs model [64, 16]"));

            var bytes = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
            File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), bytes.AsSpan(0, bytes.Length / 2).ToArray());
            act.Should().Throw<Exception>().Where(e => e.Message.Contains("model.safetensors"));

            File.Delete(Path.Combine(dir, "model.safetensors"));
            act.Should().Throw<FileNotFoundException>().WithMessage("*model.safetensors*pytorch_model.bin*");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Loads_fp16_and_sharded_safetensors_and_runs_in_bfloat16()
    {
        using var scope = NewDisposeScope();
        var (weights, data) = ClipTestFolders.Split(TestVectors.LoadSafetensors("clip", "clip_text_tiny_quickgelu.safetensors"));
        var ids = data["__input__.input_ids"];
        var expected = data["__output__.last_hidden_state"];
        string dir = ClipTestFolders.Create("clip", "clip_text_tiny_quickgelu.json", weights.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float16)));
        try
        {
            using (var m = CLIPTextModel.FromPretrained(dir))
            {
                var y = m.forward(ids);
                y.dtype.Should().Be(ScalarType.Float32);
                double err = TensorAssert.MaxAbsError(y, expected);
                Console.WriteLine($"fp16 checkpoint into fp32: max abs {err:G3}");
                err.Should().BeLessThan(0.05);
            }

            // Sharded: two files plus model.safetensors.index.json.
            File.Delete(Path.Combine(dir, "model.safetensors"));
            var keys = weights.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
            var first = keys.Take(keys.Count / 2).ToHashSet();
            ClipTestFolders.WriteSafetensors(Path.Combine(dir, "model-00001-of-00002.safetensors"), weights.Where(kv => first.Contains(kv.Key)).ToDictionary());
            ClipTestFolders.WriteSafetensors(Path.Combine(dir, "model-00002-of-00002.safetensors"), weights.Where(kv => !first.Contains(kv.Key)).ToDictionary());
            var map = keys.ToDictionary(k => k, k => first.Contains(k) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));
            using (var m = CLIPTextModel.FromPretrained(dir))
                TensorAssert.Close(m.forward(ids), expected, 1e-5, 1e-5, "sharded");

            using (var m = CLIPTextModel.FromPretrained(dir, ScalarType.BFloat16))
            {
                var y = m.forward(ids);
                y.dtype.Should().Be(ScalarType.BFloat16);
                double err = TensorAssert.MaxAbsError(y, expected);
                Console.WriteLine($"bf16 model: max abs {err:G3}");
                err.Should().BeLessThan(0.25);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Sd15_text_encoder_builds_on_meta_with_the_official_parameter_count()
    {
        // SD 1.5 text_encoder/config.json = openai ViT-L/14 text tower: 123,060,480 parameters.
        using var model = new CLIPTextModel(ClipTextConfig.VitL14, META);
        model.parameters().Sum(p => p.numel()).Should().Be(123_060_480);
        model.state_dict().Should().HaveCount(196);
    }
}
