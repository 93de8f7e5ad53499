using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Distillers;

/// <summary>
/// VSD's trainable particle noise predictor ε_φ(x_t; t, y, c): a LoRA copy of a Stable Diffusion UNet with a camera MLP, or
/// the small <see cref="CameraConditionedNoisePredictor"/>. It works in the prior's latent space; the distiller owns its
/// optimiser and training step.
/// </summary>
public interface ITrainableNoisePredictor : IDisposable
{
    /// <summary>What <see cref="Predict"/> returns (ε or v); the training target follows it.</summary>
    PredictionType PredictionType { get; }

    /// <summary>The latent shape it was built for (must equal the prior's).</summary>
    LatentShape LatentShape { get; }

    /// <summary>
    /// Raw prediction with gradient to the trainable parameters (when grad mode is on).
    /// </summary>
    /// <param name="noisyLatents">x_t [N, C, h, w].</param>
    /// <param name="timesteps">t [N] int64.</param>
    /// <param name="text">Token embeddings [N, L, D].</param>
    /// <param name="cameras">Camera-to-world flattened row-major to [N, 16]; all-zero rows mean "no camera".</param>
    Tensor Predict(Tensor noisyLatents, Tensor timesteps, Tensor text, Tensor cameras);

    /// <summary>The parameters the distiller's AdamW trains (LoRA + camera MLP for the SD implementation).</summary>
    IReadOnlyList<TorchSharp.Modules.Parameter> TrainableParameters { get; }
}
