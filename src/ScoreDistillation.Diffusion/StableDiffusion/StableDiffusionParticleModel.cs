using ScoreDistillation.Diffusion.Lora;
using ScoreDistillation.Diffusion.Schedulers;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Distillers;
using ScoreDistillation.Priors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.StableDiffusion;

/// <summary>
/// VSD's particle noise predictor ε_φ for Stable Diffusion (ProlificDreamer): a frozen SD UNet with rank-r LoRA adapters on
/// every attention layer and a camera MLP added to the time embedding; only the adapters and the MLP train.
/// <see cref="FromPrior"/> shares the prior's UNet (threestudio's single-model mode: the adapter is enabled only inside
/// <see cref="Predict"/>, so the prior keeps computing the pretrained ε); <see cref="FromPretrained"/> loads a separate
/// UNet such as SD 2.1 (768, v-prediction), the reference default.
/// </summary>
public sealed class StableDiffusionParticleModel : ITrainableNoisePredictor
{
    readonly UNet2DConditionModel _unet;
    readonly bool _ownsUnet;
    bool _disposed;

    /// <summary>Adapts <paramref name="unet"/>; its base weights are frozen.</summary>
    /// <param name="unet">The base UNet (float32, fp16 or bf16, on the device ε_φ runs on).</param>
    /// <param name="predictionType">What the UNet predicts (ε or v).</param>
    /// <param name="latentShape">The prior's latent shape (the particle runs at the prior's resolution).</param>
    /// <param name="options">LoRA options; null uses ProlificDreamer's.</param>
    /// <param name="ownsUnet">Dispose <paramref name="unet"/> with the particle (false when it is shared with a prior).</param>
    /// <exception cref="ArgumentException">x₀ prediction, or a latent shape the UNet cannot take.</exception>
    public StableDiffusionParticleModel(UNet2DConditionModel unet, PredictionType predictionType, LatentShape latentShape, LoraOptions? options = null, bool ownsUnet = true)
    {
        ArgumentNullException.ThrowIfNull(unet);
        if (predictionType is not (PredictionType.Epsilon or PredictionType.VPrediction))
            throw new ArgumentException($"ε_φ must predict epsilon or v_prediction, not {predictionType}.", nameof(predictionType));
        if (latentShape.Channels != unet.Config.InChannels || unet.Config.OutChannels != unet.Config.InChannels)
            throw new ArgumentException($"Latent shape {latentShape} does not fit the UNet (in_channels {unet.Config.InChannels}, out_channels {unet.Config.OutChannels}).", nameof(latentShape));
        var o = options ?? new LoraOptions();
        if (!o.CameraEmbedding) throw new ArgumentException("The particle model is camera-conditioned: LoraOptions.CameraEmbedding must be true.", nameof(options));
        if (o.CameraInputDim != 16) throw new ArgumentException($"VSD passes flattened 4×4 cameras: LoraOptions.CameraInputDim must be 16, got {o.CameraInputDim}.", nameof(options));
        _unet = unet;
        _ownsUnet = ownsUnet;
        PredictionType = predictionType;
        LatentShape = latentShape;
        unet.eval();
        foreach (var p in unet.parameters()) p.requires_grad = false;
        Adapter = new UNetLoraAdapter(unet, o);
    }

    /// <summary>
    /// ε_φ on the prior's own UNet (threestudio's single-model mode, SD 2.1-base for ε_φ too): no second UNet in memory.
    /// The particle must be disposed before the prior.
    /// </summary>
    public static StableDiffusionParticleModel FromPrior(StableDiffusionPrior prior, LoraOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(prior);
        return new StableDiffusionParticleModel(prior.Unet, prior.PredictionType, prior.LatentShape, options, ownsUnet: false);
    }

    /// <summary>
    /// ε_φ on a separate UNet loaded from a diffusers folder (the reference uses stabilityai/stable-diffusion-2-1, v-prediction,
    /// next to a 2.1-base prior). Only <c>unet/</c> and <c>scheduler/scheduler_config.json</c> are read; the scheduler's β
    /// schedule must equal the prior's, because VSD builds ε_φ's noisy inputs and v targets with the prior's schedule.
    /// </summary>
    /// <param name="folder">The model folder.</param>
    /// <param name="prior">The prior ε_φ works with (latent shape, schedule, device).</param>
    /// <param name="options">LoRA options.</param>
    /// <param name="dtype">Dtype of the frozen base UNet (default float32; fp16 on CUDA halves its memory).</param>
    /// <param name="variant">Weight file variant such as "fp16", or null.</param>
    /// <exception cref="FileNotFoundException">A missing file (the message names it).</exception>
    /// <exception cref="ArgumentException">A different β schedule or x₀ prediction.</exception>
    public static StableDiffusionParticleModel FromPretrained(string folder, StableDiffusionPrior prior, LoraOptions? options = null, ScalarType? dtype = null, string? variant = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(prior);
        var config = SchedulerConfig.Load(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        var prediction = StableDiffusionPrior.CheckPrediction(config.PredictionType, Path.Combine(folder, "scheduler", "scheduler_config.json"));
        var schedule = new DdpmScheduler(config).Schedule;
        if (schedule.NumTimesteps != prior.Schedule.NumTimesteps ||
            Enumerable.Range(0, schedule.NumTimesteps).Any(t => Math.Abs(schedule.AlphaBar(t) - prior.Schedule.AlphaBar(t)) > 1e-6))
            throw new ArgumentException($"The scheduler of '{folder}' has a different β schedule from the prior's; VSD needs ε_φ and the prior on the same forward process.", nameof(folder));
        var unet = UNet2DConditionModel.FromPretrained(folder, dtype, prior.Device, variant);
        try { return new StableDiffusionParticleModel(unet, prediction, prior.LatentShape, options, ownsUnet: true); }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    /// <summary>The LoRA adapters and camera MLP.</summary>
    public UNetLoraAdapter Adapter { get; }

    /// <summary>The base UNet (frozen; shared with the prior after <see cref="FromPrior"/>).</summary>
    public UNet2DConditionModel Unet => _unet;

    /// <inheritdoc />
    public PredictionType PredictionType { get; }

    /// <inheritdoc />
    public LatentShape LatentShape { get; }

    /// <inheritdoc />
    public IReadOnlyList<Parameter> TrainableParameters => Adapter.TrainableParameters;

    /// <inheritdoc />
    public Tensor Predict(Tensor noisyLatents, Tensor timesteps, Tensor text, Tensor cameras)
    {
        ArgumentNullException.ThrowIfNull(noisyLatents);
        ArgumentNullException.ThrowIfNull(timesteps);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(cameras);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var x = noisyLatents;
        if (x.dim() != 4 || x.shape[1] != LatentShape.Channels)
            throw new ArgumentException($"x_t must be [N, {LatentShape.Channels}, h, w], got [{string.Join(", ", x.shape)}].", nameof(noisyLatents));
        long n = x.shape[0];
        if (cameras.dim() != 2 || cameras.shape[0] != n || cameras.shape[1] != 16)
            throw new ArgumentException($"Cameras must be [{n}, 16], got [{string.Join(", ", cameras.shape)}].", nameof(cameras));
        long d = _unet.Config.CrossAttentionDim[0];
        if (text.dim() != 3 || text.shape[0] != n || text.shape[2] != d)
            throw new ArgumentException($"Text must be [{n}, L, {d}], got [{string.Join(", ", text.shape)}].", nameof(text));
        using var scope = NewDisposeScope();
        var dtype = _unet.parameters().First().dtype;
        var cam = Adapter.CameraEmbedding(cameras);
        var output = Adapter.WithEnabled(() => _unet.Forward(x.to(dtype), timesteps, text.to(dtype), cam));
        return output.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Writes the LoRA and camera-MLP weights alone (see <see cref="UNetLoraAdapter.Save"/>).</summary>
    public void Save(string path) => Adapter.Save(path);

    /// <summary>Loads LoRA and camera-MLP weights written by <see cref="Save"/> (see <see cref="UNetLoraAdapter.Load"/>).</summary>
    public void Load(string path) => Adapter.Load(path);

    /// <summary>Detaches and disposes the adapter; disposes the UNet only when the particle owns it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Adapter.Dispose();
        if (_ownsUnet) _unet.Dispose();
    }
}
