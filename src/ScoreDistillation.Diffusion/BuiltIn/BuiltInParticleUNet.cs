using ScoreDistillation.Distillers;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Priors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// VSD's particle model ε_φ for the built-in world: a Stable Diffusion <see cref="UNet2DConditionModel"/> in a tiny
/// configuration (pixel space, 3 channels, blocks [32, 64], one resnet per block, cross-attention to the built-in text
/// tokens) with a camera embedding Linear(16, E)–SiLU–Linear(E, E) added to the time embedding, as threestudio's VSD
/// feeds the flattened camera-to-world matrix. Trained from scratch (there is no pretrained LoRA source in this world);
/// every parameter is trainable. Initialisation is reproducible from a seed.
/// </summary>
public sealed class BuiltInParticleUNet : Module<Tensor, Tensor, Tensor, Tensor, Tensor>, ITrainableNoisePredictor
{
#pragma warning disable IDE1006 // Field names are state-dict keys.
    readonly UNet2DConditionModel unet;
    readonly Linear camera_linear_1;
    readonly Linear camera_linear_2;
#pragma warning restore IDE1006
    readonly Parameter[] _trainable;

    /// <summary>Creates the model on the CPU in float32 (call <c>to(device)</c> before handing it to a distiller).</summary>
    /// <param name="latentShape">The prior's latent shape (3 × S × S for <see cref="BuiltInPrior"/>).</param>
    /// <param name="textDim">Token embedding width D.</param>
    /// <param name="baseChannels">Channels of the first block (the second has twice as many); a multiple of 8.</param>
    /// <param name="predictionType">What the model predicts (v as threestudio's VSD LoRA on SD 2.1, or ε).</param>
    /// <param name="seed">Initialisation seed.</param>
    public BuiltInParticleUNet(LatentShape latentShape, int textDim, int baseChannels = 32, PredictionType predictionType = PredictionType.VPrediction, long seed = 0)
        : base(nameof(BuiltInParticleUNet))
    {
        if (baseChannels < 8 || baseChannels % 8 != 0) throw new ArgumentOutOfRangeException(nameof(baseChannels), baseChannels, "Base channels must be a positive multiple of 8.");
        if (textDim < 1) throw new ArgumentOutOfRangeException(nameof(textDim));
        if (predictionType == PredictionType.Sample) throw new ArgumentException("ε_φ predicts ε or v.", nameof(predictionType));
        if (latentShape.Height % 2 != 0 || latentShape.Width % 2 != 0)
            throw new ArgumentException($"The tiny UNet downsamples once; latent size {latentShape.Height}×{latentShape.Width} must be even.", nameof(latentShape));
        LatentShape = latentShape;
        PredictionType = predictionType;
        Config = TinyConfig(latentShape, textDim, baseChannels);
        unet = new UNet2DConditionModel(Config);
        int e = unet.TimeEmbeddingDim;
        camera_linear_1 = Linear(16, e);
        camera_linear_2 = Linear(e, e);
        RegisterComponents();
        _trainable = parameters().ToArray();

        // Reproducible initialisation: PyTorch's default bound 1/√fan_in for every conv and linear, from a local generator;
        // normalisation layers start at weight 1, bias 0.
        using var g = new Generator((ulong)seed);
        using var guard = no_grad();
        foreach (var (_, m) in named_modules())
        {
            switch (m)
            {
                case TorchSharp.Modules.Conv2d or TorchSharp.Modules.Linear:
                    {
                        var ps = m.parameters(recurse: false).ToArray();
                        var w = ps.First(p => p.dim() >= 2);
                        long fanIn = w.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                        double bound = 1 / Math.Sqrt(fanIn);
                        foreach (var p in ps) p.uniform_(-bound, bound, g);
                        break;
                    }
                case TorchSharp.Modules.GroupNorm or TorchSharp.Modules.LayerNorm:
                    foreach (var (name, p) in m.named_parameters(recurse: false))
                        if (name == "weight") p.fill_(1); else p.zero_();
                    break;
            }
        }
    }

    /// <summary>The tiny SD-class UNet configuration used for a latent shape and text width.</summary>
    public static UNet2DConditionConfig TinyConfig(LatentShape latentShape, int textDim, int baseChannels = 32) => new()
    {
        SampleSize = latentShape.Height,
        InChannels = latentShape.Channels,
        OutChannels = latentShape.Channels,
        DownBlockTypes = new[] { "CrossAttnDownBlock2D", "DownBlock2D" },
        UpBlockTypes = new[] { "UpBlock2D", "CrossAttnUpBlock2D" },
        BlockOutChannels = new[] { baseChannels, 2 * baseChannels },
        LayersPerBlock = new[] { 1 },
        CrossAttentionDim = new[] { textDim },
        AttentionHeadDim = new[] { 4 },
        NormNumGroups = 8,
        UseLinearProjection = true,
    };

    /// <summary>The UNet configuration.</summary>
    public UNet2DConditionConfig Config { get; }

    /// <inheritdoc />
    public PredictionType PredictionType { get; }

    /// <inheritdoc />
    public LatentShape LatentShape { get; }

    /// <inheritdoc />
    public IReadOnlyList<Parameter> TrainableParameters => _trainable;

    /// <inheritdoc />
    public Tensor Predict(Tensor noisyLatents, Tensor timesteps, Tensor text, Tensor cameras) => forward(noisyLatents, timesteps, text, cameras);

    /// <summary>Raw prediction for x_t [N, C, h, w], t [N], text [N, L, D], cameras [N, 16] (zero rows: no camera).</summary>
    public override Tensor forward(Tensor x, Tensor t, Tensor text, Tensor cameras)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(cameras);
        if (cameras.dim() != 2 || cameras.shape[1] != 16 || cameras.shape[0] != x.shape[0])
            throw new ArgumentException($"Cameras must be [{x.shape[0]}, 16], got [{string.Join(", ", cameras.shape)}].", nameof(cameras));
        using var scope = NewDisposeScope();
        var cam = camera_linear_2.forward(functional.silu(camera_linear_1.forward(cameras.to(x.dtype))));
        return unet.Forward(x, t, text.to(x.dtype), cam).MoveToOuterDisposeScope();
    }
}
