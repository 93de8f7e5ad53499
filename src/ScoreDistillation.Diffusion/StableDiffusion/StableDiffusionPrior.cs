using System.Text.Json;
using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Diffusion.Schedulers;
using ScoreDistillation.Diffusion.Text;
using ScoreDistillation.Diffusion.Unet;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.StableDiffusion;

/// <summary>
/// A frozen Stable Diffusion model (1.x / 2.x, diffusers folder layout) as an <see cref="IDiffusionPrior"/>: CLIP text
/// embeddings in a bounded per-prompt cache (<see cref="ClipPromptEncoder"/>), VAE encoding with gradients to the RGB, one batched no-grad UNet call per request,
/// v → ε conversion for v-prediction models.
/// </summary>
public sealed class StableDiffusionPrior : IDiffusionPrior
{
    readonly UNet2DConditionModel _unet;
    readonly AutoencoderKL _vae;
    readonly ClipPromptEncoder _text;
    bool _disposed;

    /// <summary>Assembles a prior from loaded components; the prior takes ownership of the models and freezes them.</summary>
    /// <param name="unet">The denoiser.</param>
    /// <param name="vae">The autoencoder.</param>
    /// <param name="text">The CLIP prompt encoder (its last hidden state is the cross-attention context); owned by the prior.</param>
    /// <param name="schedule">The training forward process.</param>
    /// <param name="predictionType">What the UNet predicts (epsilon or v_prediction).</param>
    /// <param name="modelId">Identifier for caches.</param>
    /// <param name="imageSize">RGB working resolution, or null for UNet sample_size × VAE factor.</param>
    /// <exception cref="NotSupportedException"><paramref name="predictionType"/> is <see cref="PredictionType.Sample"/>.</exception>
    public StableDiffusionPrior(UNet2DConditionModel unet, AutoencoderKL vae, ClipPromptEncoder text,
        NoiseSchedule schedule, PredictionType predictionType, string modelId, int? imageSize = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(vae);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(schedule);
        CheckPrediction(predictionType, null);
        var textEncoder = text.Model;
        if (textEncoder.Config.HiddenSize != unet.Config.CrossAttentionDim[0])
            throw new ArgumentException($"Text encoder width {textEncoder.Config.HiddenSize} differs from the UNet's cross_attention_dim {unet.Config.CrossAttentionDim[0]}.");
        if (vae.Config.LatentChannels != unet.Config.InChannels)
            throw new ArgumentException($"VAE latent channels {vae.Config.LatentChannels} differ from the UNet's in_channels {unet.Config.InChannels}.");
        _unet = unet;
        _vae = vae;
        _text = text;
        Schedule = schedule;
        PredictionType = predictionType;
        ModelId = modelId;
        foreach (var m in new nn.Module[] { unet, vae, textEncoder })
        {
            m.eval();
            foreach (var p in m.parameters()) p.requires_grad = false;
        }
        int factor = vae.DownsampleFactor;
        ImageSize = imageSize ?? (unet.Config.SampleSize ?? 64) * factor;
        if (ImageSize % factor != 0)
            throw new ArgumentException($"Image size {ImageSize} is not a multiple of the VAE downsampling factor {factor}.", nameof(imageSize));
        LatentShape = new LatentShape(vae.Config.LatentChannels, ImageSize / factor, ImageSize / factor);
        Device = unet.parameters().First().device;
    }

    /// <summary>
    /// Loads a diffusers Stable Diffusion folder: <c>model_index.json</c>, <c>unet/</c>, <c>vae/</c>, <c>text_encoder/</c>,
    /// <c>tokenizer/</c> (vocab.json, merges.txt) and <c>scheduler/scheduler_config.json</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names the path).</exception>
    /// <exception cref="Loading.CheckpointException">Weights that do not fit.</exception>
    public static StableDiffusionPrior FromPretrained(string folder, StableDiffusionPriorOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new StableDiffusionPriorOptions();
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Stable Diffusion folder not found: {folder}");
        string index = Path.Combine(folder, "model_index.json");
        if (!File.Exists(index))
            throw new FileNotFoundException($"Not a diffusers model folder: {index} is missing.", index);
        using (var doc = JsonDocument.Parse(File.ReadAllText(index)))
            foreach (var part in new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" })
                if (!doc.RootElement.TryGetProperty(part, out _))
                    throw new InvalidDataException($"{index} lists no '{part}' component.");

        string schedulerPath = Path.Combine(folder, "scheduler", "scheduler_config.json");
        var scheduler = SchedulerConfig.Load(schedulerPath);
        var prediction = CheckPrediction(options.PredictionType ?? scheduler.PredictionType, options.PredictionType is null ? schedulerPath : null);
        var schedule = new DdpmScheduler(scheduler).Schedule;
        var tokenizer = ClipTokenizer.FromPretrained(Path.Combine(folder, "tokenizer"));

        var disposables = new List<IDisposable>();
        try
        {
            var unet = UNet2DConditionModel.FromPretrained(folder, options.DType, options.Device, options.Variant);
            disposables.Add(unet);
            var vaeConfig = AutoencoderKLConfig.FromFile(Path.Combine(folder, "vae", "config.json"));
            var vaeDType = options.VaeDType ?? (options.DType == ScalarType.Float16 && vaeConfig.ForceUpcast ? ScalarType.Float32 : options.DType);
            var vae = AutoencoderKL.FromPretrained(folder, vaeDType, options.Device, options.Variant);
            disposables.Add(vae);
            var text = CLIPTextModel.FromPretrained(Path.Combine(folder, "text_encoder"), options.DType, options.Device);
            disposables.Add(text);
            string id = $"stable-diffusion:{Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)))}:{options.DType}";
            var encoder = new ClipPromptEncoder(text, tokenizer, options.TextCacheCapacity);
            disposables.Remove(text);
            disposables.Add(encoder);
            return new StableDiffusionPrior(unet, vae, encoder, schedule, prediction, id, options.ImageSize);
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public string ModelId { get; }

    /// <inheritdoc />
    public NoiseSchedule Schedule { get; }

    /// <summary>What the UNet predicts (v-prediction outputs are converted to ε by <see cref="PredictNoise"/>).</summary>
    public PredictionType PredictionType { get; }

    /// <inheritdoc />
    public LatentShape LatentShape { get; }

    /// <inheritdoc />
    public int ImageSize { get; }

    /// <inheritdoc />
    public int ViewsPerSample => 1;

    /// <inheritdoc />
    public bool UsesCameras => false;

    /// <inheritdoc />
    public Device Device { get; }

    /// <summary>The VAE latent scaling factor.</summary>
    public double ScalingFactor => _vae.ScalingFactor;

    /// <summary>The denoiser (frozen).</summary>
    public UNet2DConditionModel Unet => _unet;

    /// <summary>The autoencoder (frozen).</summary>
    public AutoencoderKL Vae => _vae;

    /// <summary>The prompt encoder (CLIP text model, tokenizer and the bounded embedding cache).</summary>
    public ClipPromptEncoder TextEncoder => _text;

    /// <inheritdoc />
    public TextConditioning EncodeText(IReadOnlyList<string> prompts)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _text.Encode(prompts);
    }

    /// <inheritdoc />
    public Tensor EncodeImages(Tensor rgb, Generator? generator = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _vae.EncodeImages(rgb, ImageSize, generator);
    }

    /// <inheritdoc />
    public Tensor DecodeLatents(Tensor latents)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _vae.DecodeToImages(latents);
    }

    /// <inheritdoc />
    public Tensor PredictNoise(NoiseQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var dtype = _unet.parameters().First().dtype;
        var noisy = query.NoisyLatents.detach();
        var output = _unet.Forward(noisy.to(dtype), query.Timesteps, query.Text.detach().to(dtype)).to(noisy.dtype);
        if (PredictionType == PredictionType.VPrediction)
            output = Schedule.EpsilonFromVelocity(noisy, output, query.Timesteps);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the models and the text cache.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _text.Dispose();
        _unet.Dispose();
        _vae.Dispose();
    }

    /// <summary>Accepts ε and v prediction; x₀ ("sample") prediction is rejected with a message naming the source.</summary>
    internal static PredictionType CheckPrediction(PredictionType predictionType, string? source)
    {
        if (predictionType is PredictionType.Epsilon or PredictionType.VPrediction) return predictionType;
        string where = source is null ? "" : $" (from {source})";
        throw new NotSupportedException(predictionType == PredictionType.Sample
            ? $"prediction_type 'sample' (x₀ prediction){where} is not supported by the Stable Diffusion prior: score distillation needs a model that predicts epsilon or v_prediction."
            : $"prediction_type {predictionType}{where} is not supported (supported: epsilon, v_prediction).");
    }
}
