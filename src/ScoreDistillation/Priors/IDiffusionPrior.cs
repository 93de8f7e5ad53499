using static TorchSharp.torch;

namespace ScoreDistillation.Priors;

/// <summary>Shape of one sample in the space where a prior denoises: channels × height × width.</summary>
/// <param name="Channels">Latent (or pixel) channels, e.g. 4 for Stable Diffusion latents, 3 for a pixel-space prior.</param>
/// <param name="Height">Latent height.</param>
/// <param name="Width">Latent width.</param>
public readonly record struct LatentShape(int Channels, int Height, int Width);

/// <summary>
/// One batched noise-prediction request. Rows may mix timesteps, text and cameras: ASD sends [x_t; x_t; x_{t+Δt}]
/// with [cond; uncond; cond] text in a single call.
/// </summary>
/// <param name="NoisyLatents">x_t [N, C, h, w].</param>
/// <param name="Timesteps">t [N], int64, each in [0, T−1].</param>
/// <param name="Text">Token embeddings [N, L, D] (rows of <see cref="TextConditioning.Tokens"/>).</param>
/// <param name="Cameras">Camera-to-world matrices [N, 4, 4] in the library's convention, for priors that take cameras; otherwise null.</param>
public sealed record NoiseQuery(Tensor NoisyLatents, Tensor Timesteps, Tensor Text, Tensor? Cameras = null);

/// <summary>
/// A frozen diffusion model seen as a noise predictor ε̂(x_t; t, y, c), whatever its architecture: Stable Diffusion,
/// MVDream, or the built-in procedural prior. v-prediction models convert to ε inside the prior.
/// </summary>
public interface IDiffusionPrior : IDisposable
{
    /// <summary>A stable identifier of the model and its configuration, used as a cache key (e.g. for text embeddings).</summary>
    string ModelId { get; }

    /// <summary>The forward process ᾱ_t the model was trained with.</summary>
    NoiseSchedule Schedule { get; }

    /// <summary>Shape of one latent sample.</summary>
    LatentShape LatentShape { get; }

    /// <summary>The RGB resolution (height = width) that <see cref="EncodeImages"/> expects renders at.</summary>
    int ImageSize { get; }

    /// <summary>Views per sample: 1 for single-view priors, e.g. 4 for MVDream. Batches are laid out view-contiguous.</summary>
    int ViewsPerSample { get; }

    /// <summary>True when the prior reads <see cref="NoiseQuery.Cameras"/>.</summary>
    bool UsesCameras { get; }

    /// <summary>Device the model runs on.</summary>
    Device Device { get; }

    /// <summary>Encodes prompts ("" is unconditional) into token and pooled embeddings. No gradient.</summary>
    TextConditioning EncodeText(IReadOnlyList<string> prompts);

    /// <summary>RGB [B, 3, H, W] in [0, 1] → latents [B, C, h, w]. Differentiable with respect to the RGB.</summary>
    /// <param name="rgb">Images in [0, 1]; resized to <see cref="ImageSize"/> inside if needed.</param>
    /// <param name="generator">Randomness for a stochastic encoder (VAE posterior sample); null uses a fresh seed.</param>
    Tensor EncodeImages(Tensor rgb, Generator? generator = null);

    /// <summary>Latents [B, C, h, w] → RGB [B, 3, H, W] in [0, 1]. No gradient.</summary>
    Tensor DecodeLatents(Tensor latents);

    /// <summary>One frozen, no-grad, batched prediction of ε for every row of the query.</summary>
    Tensor PredictNoise(NoiseQuery query);
}
