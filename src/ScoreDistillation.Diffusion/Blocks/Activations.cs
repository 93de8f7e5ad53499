using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

/// <summary>The activation functions diffusers configs name in <c>act_fn</c>.</summary>
internal static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "silu" or "swish" => x => nn.functional.silu(x),
        "mish" => x => nn.functional.mish(x),
        "gelu" => x => nn.functional.gelu(x),
        "relu" => x => nn.functional.relu(x),
        _ => throw new NotSupportedException($"Unsupported activation function '{name}' (supported: silu, swish, mish, gelu, relu)."),
    };
}
