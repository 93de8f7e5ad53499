using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>Options of <see cref="MVDreamPrior"/>, with the reference (MVDream-threestudio) defaults.</summary>
public sealed record MVDreamPriorOptions
{
    /// <summary>Device for all models; default CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>dtype of the frozen UNet (fp16/bf16 on CUDA); the VAE follows <see cref="VaeDType"/>.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>dtype of the VAE; null uses <see cref="DType"/>.</summary>
    public ScalarType? VaeDType { get; init; }

    /// <summary>Renders are resized to this resolution before the VAE (256 → 32² latents).</summary>
    public int ImageSize { get; init; } = 256;

    /// <summary>Views per sample.</summary>
    public int ViewsPerSample { get; init; } = 4;

    /// <summary>The UNet configuration; null picks sd-v2.1-base-4view or sd-v1.5-4view from the checkpoint's context width.</summary>
    public MultiViewUNetConfig? UNetConfig { get; init; }

    /// <summary>The VAE configuration (the checkpoint's <c>first_stage_model</c>); default the SD 2.1 VAE that both published models use.</summary>
    public Vae.AutoencoderKLConfig VaeConfig { get; init; } = Vae.AutoencoderKLConfig.StableDiffusion21Base;

    /// <summary>Prompts kept in the text-embedding cache.</summary>
    public int TextCacheCapacity { get; init; } = 1024;
}
