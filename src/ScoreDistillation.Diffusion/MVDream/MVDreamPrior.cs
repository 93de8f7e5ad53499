using ScoreDistillation.Diffusion.Clip;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Text;
using ScoreDistillation.Diffusion.Vae;
using ScoreDistillation.Priors;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>
/// MVDream as an <see cref="IDiffusionPrior"/>: 4 views per sample (view-contiguous batches), renders resized to 256² and
/// encoded by the checkpoint's own VAE to 32² latents (×0.18215, posterior sample), text from the Stable Diffusion 2.1-base CLIP
/// text encoder (as the reference pipeline), and cameras converted from our convention by <see cref="MVDreamCameras"/>.
/// </summary>
public sealed class MVDreamPrior : IDiffusionPrior
{
    readonly MultiViewUNet _unet;
    readonly AutoencoderKL _vae;
    readonly ClipPromptEncoder _text;
    bool _disposed;

    /// <summary>Assembles a prior from loaded parts; takes ownership of them.</summary>
    public MVDreamPrior(MultiViewUNet unet, AutoencoderKL vae, ClipPromptEncoder text, MVDreamPriorOptions? options = null, string? modelId = null)
    {
        _unet = unet ?? throw new ArgumentNullException(nameof(unet));
        _vae = vae ?? throw new ArgumentNullException(nameof(vae));
        _text = text ?? throw new ArgumentNullException(nameof(text));
        var o = options ?? new MVDreamPriorOptions();
        if (o.ImageSize % _vae.DownsampleFactor != 0)
            throw new ArgumentException($"MVDream: image size {o.ImageSize} is not a multiple of the VAE's downsampling factor {_vae.DownsampleFactor}.", nameof(options));
        if (o.ViewsPerSample < 1) throw new ArgumentException("MVDream: views per sample must be ≥ 1.", nameof(options));
        ImageSize = o.ImageSize;
        ViewsPerSample = o.ViewsPerSample;
        int side = o.ImageSize / _vae.DownsampleFactor;
        LatentShape = new LatentShape(_unet.Config.InChannels, side, side);
        Device = _unet.parameters().First().device;
        ModelId = modelId ?? $"mvdream-{_unet.Config.ModelChannels}-{_unet.Config.ContextDim}";
        _unet.eval();
        _vae.eval();
    }

    /// <summary>
    /// Loads the official checkpoint (<c>sd-v2.1-base-4view.pt</c> or <c>sd-v1.5-4view.pt</c>, or a safetensors copy of its state
    /// dict) plus the text encoder and tokenizer of a diffusers Stable Diffusion folder (2.1-base for the 2.1 model, 1.5 for the
    /// 1.5 model). No conversion step. Peak host memory is about the checkpoint's size while reading.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing (the message names it).</exception>
    /// <exception cref="CheckpointException">The checkpoint does not match (missing, unexpected or misshaped keys are named).</exception>
    public static MVDreamPrior FromCheckpoint(string checkpointPath, string stableDiffusionFolder, MVDreamPriorOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(checkpointPath);
        ArgumentException.ThrowIfNullOrEmpty(stableDiffusionFolder);
        var o = options ?? new MVDreamPriorOptions();
        if (!Directory.Exists(stableDiffusionFolder))
            throw new DirectoryNotFoundException($"MVDream: Stable Diffusion folder (for the text encoder and tokenizer) not found: {stableDiffusionFolder}");
        var state = MVDreamCheckpoint.Read(checkpointPath);
        MultiViewUNet? unet = null;
        AutoencoderKL? vae = null;
        CLIPTextModel? textModel = null;
        try
        {
            var config = o.UNetConfig ?? InferConfig(state, checkpointPath);
            unet = MVDreamCheckpoint.LoadUNet(state, config, checkpointPath, o.ViewsPerSample);
            vae = MVDreamCheckpoint.LoadVae(state, o.VaeConfig, checkpointPath);
            foreach (var t in state.Values) t.Dispose();
            state.Clear();
            textModel = CLIPTextModel.FromPretrained(Path.Combine(stableDiffusionFolder, "text_encoder"), device: o.Device);
            var tokenizer = ClipTokenizer.FromPretrained(Path.Combine(stableDiffusionFolder, "tokenizer"),
                config.ContextDim == 768 ? ClipTokenizerOptions.StableDiffusion15 : ClipTokenizerOptions.StableDiffusion2);
            if (textModel.Config.HiddenSize != config.ContextDim)
                throw new CheckpointException($"MVDream: the text encoder in '{stableDiffusionFolder}' is {textModel.Config.HiddenSize}-d but the UNet expects {config.ContextDim}-d context (use SD 2.1-base for sd-v2.1-base-4view, SD 1.5 for sd-v1.5-4view).");
            unet.to(o.DType);
            vae.to(o.VaeDType ?? o.DType);
            if (o.Device is not null)
            {
                unet.to(o.Device);
                vae.to(o.Device);
            }
            return new MVDreamPrior(unet, vae, new ClipPromptEncoder(textModel, tokenizer, o.TextCacheCapacity), o,
                $"mvdream:{Path.GetFileName(checkpointPath)}");
        }
        catch
        {
            foreach (var t in state.Values) t.Dispose();
            unet?.Dispose();
            vae?.Dispose();
            textModel?.Dispose();
            throw;
        }
    }

    static MultiViewUNetConfig InferConfig(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        const string key = LdmKeyMap.UNetPrefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight";
        if (!state.TryGetValue(key, out var k))
            throw new CheckpointException($"MVDream checkpoint '{source}' has no '{key}': it is not an MVDream (LDM multi-view UNet) checkpoint.");
        return k.shape[1] switch
        {
            1024 => MultiViewUNetConfig.SdV21Base4View,
            768 => MultiViewUNetConfig.SdV15_4View,
            var d => throw new CheckpointException($"MVDream checkpoint '{source}': unknown context width {d} (expected 1024 for sd-v2.1-base-4view or 768 for sd-v1.5-4view); pass MVDreamPriorOptions.UNetConfig."),
        };
    }

    /// <inheritdoc />
    public string ModelId { get; }

    /// <inheritdoc />
    public NoiseSchedule Schedule { get; } = NoiseSchedule.ScaledLinear();

    /// <inheritdoc />
    public LatentShape LatentShape { get; }

    /// <inheritdoc />
    public int ImageSize { get; }

    /// <inheritdoc />
    public int ViewsPerSample { get; }

    /// <inheritdoc />
    public bool UsesCameras => true;

    /// <inheritdoc />
    public Device Device { get; }

    /// <summary>The multi-view UNet.</summary>
    public MultiViewUNet UNet => _unet;

    /// <summary>The VAE.</summary>
    public AutoencoderKL Vae => _vae;

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
    /// <exception cref="ArgumentException">No cameras, or a batch that is not a multiple of <see cref="ViewsPerSample"/>.</exception>
    public Tensor PredictNoise(NoiseQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (query.Cameras is null) throw new ArgumentException("MVDream needs cameras: NoiseQuery.Cameras is null.", nameof(query));
        long n = query.NoisyLatents.shape[0];
        if (n % ViewsPerSample != 0)
            throw new ArgumentException($"MVDream: batch {n} is not a multiple of {ViewsPerSample} views per sample.", nameof(query));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var dtype = _unet.parameters().First().dtype;
        var noisy = query.NoisyLatents.detach();
        var cams = MVDreamCameras.FromCameraToWorld(query.Cameras.detach().to(ScalarType.Float32, noisy.device));
        var eps = _unet.Forward(noisy.to(dtype), query.Timesteps, query.Text.detach().to(dtype), cams.to(dtype), ViewsPerSample);
        return eps.to(noisy.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the models and the text cache.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _unet.Dispose();
        _vae.Dispose();
        _text.Dispose();
    }
}
