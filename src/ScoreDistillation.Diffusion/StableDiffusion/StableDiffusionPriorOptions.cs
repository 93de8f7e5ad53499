using ScoreDistillation.Priors;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.StableDiffusion;

/// <summary>How <see cref="StableDiffusionPrior.FromPretrained"/> loads and runs a Stable Diffusion folder.</summary>
public sealed record StableDiffusionPriorOptions
{
    /// <summary>Device for every model (default CPU).</summary>
    public Device? Device { get; init; }

    /// <summary>Dtype of the UNet and text encoder (default float32; fp16/bf16 are meant for CUDA).</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// Dtype of the VAE; null uses <see cref="DType"/>, except that a VAE whose config says <c>force_upcast</c> stays float32
    /// when <see cref="DType"/> is float16 (as diffusers pipelines do).
    /// </summary>
    public ScalarType? VaeDType { get; init; }

    /// <summary>Weight file variant such as "fp16" (diffusion_pytorch_model.fp16.safetensors), or null.</summary>
    public string? Variant { get; init; }

    /// <summary>
    /// The RGB working resolution renders are resized to before encoding (the reference upsamples 64² renders to 512²);
    /// null uses UNet sample_size × the VAE's downsampling factor (512 for SD 1.5 / 2.1-base).
    /// </summary>
    public int? ImageSize { get; init; }

    /// <summary>Prompts whose embeddings are kept in the bounded least-recently-used text cache (0 disables caching).</summary>
    public int TextCacheCapacity { get; init; } = 1024;

    /// <summary>Overrides the scheduler config's prediction type (epsilon or v_prediction), or null to use it.</summary>
    public PredictionType? PredictionType { get; init; }
}
