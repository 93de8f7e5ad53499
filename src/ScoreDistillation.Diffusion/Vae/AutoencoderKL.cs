using ScoreDistillation.Diffusion.Blocks;
using ScoreDistillation.Diffusion.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Vae;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// The diffusers <c>AutoencoderKL</c> (Stable Diffusion VAE) built from any <see cref="AutoencoderKLConfig"/>; parameter names
/// equal the diffusers <c>state_dict</c> keys. <see cref="Encode"/> gives the posterior; <see cref="Decode"/> maps latents
/// back to images. Neither applies <see cref="ScalingFactor"/>: pipelines multiply encoded latents by it and divide before decoding.
/// </summary>
public sealed class AutoencoderKL : nn.Module<Tensor, Tensor>
{
    internal readonly Encoder encoder;
    internal readonly Decoder decoder;
    internal readonly Conv2d? quant_conv;
    internal readonly Conv2d? post_quant_conv;

    /// <summary>The configuration the model was built from.</summary>
    public AutoencoderKLConfig Config { get; }

    /// <summary>The latent scaling factor from the config (0.18215 for SD 1.x/2.x).</summary>
    public double ScalingFactor => Config.ScalingFactor;

    /// <summary>Spatial downsampling factor image → latent (2^(blocks−1), 8 for SD).</summary>
    public int DownsampleFactor => 1 << (Config.BlockOutChannels.Count - 1);

    /// <summary>Builds the model with default-initialised weights.</summary>
    /// <param name="config">The diffusers configuration.</param>
    /// <param name="device">Device for the parameters (the <c>meta</c> device builds shapes only); default CPU.</param>
    /// <param name="dtype">Parameter dtype; default float32.</param>
    public AutoencoderKL(AutoencoderKLConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(AutoencoderKL))
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.BlockOutChannels.Count == 0 || config.DownBlockTypes.Count != config.BlockOutChannels.Count || config.UpBlockTypes.Count != config.BlockOutChannels.Count)
            throw new InvalidDataException($"AutoencoderKL: down_block_types ({config.DownBlockTypes.Count}), up_block_types ({config.UpBlockTypes.Count}) and block_out_channels ({config.BlockOutChannels.Count}) must have the same non-zero length.");
        Config = config;
        var f = new LayerFactory(device, dtype);
        encoder = new Encoder(config, f);
        decoder = new Decoder(config, f);
        long z2 = 2L * config.LatentChannels;
        if (config.UseQuantConv) quant_conv = f.Conv2d(z2, z2, 1);
        if (config.UsePostQuantConv) post_quant_conv = f.Conv2d(config.LatentChannels, config.LatentChannels, 1);
        RegisterComponents();
    }

    private Action<string, Tensor>? _trace;

    /// <summary>Called with (module path, tensor) for intermediate activations; for debugging and parity tests.</summary>
    internal Action<string, Tensor>? Trace
    {
        get => _trace;
        set { _trace = value; encoder.Trace = value; decoder.Trace = value; }
    }

    /// <summary>Images [B, in_channels, H, W] in [−1, 1] → posterior over unscaled latents [B, latent_channels, H/8, W/8]. Differentiable.</summary>
    public DiagonalGaussianDistribution Encode(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Config.InChannels)
            throw new ArgumentException($"AutoencoderKL.Encode: images must be [B, {Config.InChannels}, H, W], got [{string.Join(", ", images.shape)}].", nameof(images));
        Tensor moments;
        using (var scope = NewDisposeScope())
        {
            var h = encoder.call(images);
            _trace?.Invoke("encoder", h);
            moments = quant_conv is null ? h : quant_conv.call(h);
            _trace?.Invoke("quant_conv", moments);
            moments.MoveToOuterDisposeScope();
        }
        using (moments)
            return new DiagonalGaussianDistribution(moments);
    }

    /// <summary>Unscaled latents [B, latent_channels, h, w] → images [B, out_channels, 8h, 8w] (roughly in [−1, 1]).</summary>
    public Tensor Decode(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        if (latents.dim() != 4 || latents.shape[1] != Config.LatentChannels)
            throw new ArgumentException($"AutoencoderKL.Decode: latents must be [B, {Config.LatentChannels}, h, w], got [{string.Join(", ", latents.shape)}].", nameof(latents));
        using var scope = NewDisposeScope();
        var z = post_quant_conv is null ? latents : post_quant_conv.call(latents);
        _trace?.Invoke("post_quant_conv", z);
        return decoder.call(z).MoveToOuterDisposeScope();
    }

    /// <summary>Reconstruction decode(posterior mean) (diffusers' forward with sample_posterior=false).</summary>
    public override Tensor forward(Tensor images)
    {
        using var posterior = Encode(images);
        return Decode(posterior.Mean);
    }

    /// <summary>
    /// RGB [B, 3, H, W] in [0, 1] → scaled latents (posterior sample × scaling factor), as the score-distillation pipelines
    /// encode renders: bilinear resize to <paramref name="imageSize"/>², map to [−1, 1], encode in the VAE's dtype. Gradients
    /// flow back to the RGB; the result has the RGB's dtype.
    /// </summary>
    public Tensor EncodeImages(Tensor rgb, int imageSize, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (rgb.dim() != 4 || rgb.shape[1] != 3)
            throw new ArgumentException($"EncodeImages: expected RGB [B, 3, H, W], got [{string.Join(", ", rgb.shape)}].", nameof(rgb));
        using var scope = NewDisposeScope();
        var x = rgb;
        if (x.shape[2] != imageSize || x.shape[3] != imageSize)
            x = nn.functional.interpolate(x, size: new long[] { imageSize, imageSize }, mode: InterpolationMode.Bilinear, align_corners: false);
        var dtype = parameters().First().dtype;
        using var posterior = Encode((x * 2.0 - 1.0).to(dtype));
        return (posterior.Sample(generator) * ScalingFactor).to(rgb.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Scaled latents → RGB [B, 3, H, W] in [0, 1], without gradient, in the latents' dtype.</summary>
    public Tensor DecodeToImages(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var images = Decode((latents / ScalingFactor).to(parameters().First().dtype));
        return (images.to(latents.dtype) * 0.5 + 0.5).clamp(0.0, 1.0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads a diffusers VAE folder (<c>config.json</c> + weights). <paramref name="directory"/> may be the model root (with <c>vae/</c>) or the VAE folder.
    /// </summary>
    /// <param name="directory">Model root or VAE folder.</param>
    /// <param name="dtype">Target dtype (default float32).</param>
    /// <param name="device">Target device (default CPU).</param>
    /// <param name="variant">Weight file variant such as "fp16", or null.</param>
    /// <returns>The model in eval mode.</returns>
    /// <exception cref="FileNotFoundException">No config or weight file (the message lists the paths looked for).</exception>
    /// <exception cref="CheckpointException">Missing, unexpected or wrongly shaped weights, or a corrupt file.</exception>
    public static AutoencoderKL FromPretrained(string directory, ScalarType? dtype = null, Device? device = null, string? variant = null)
    {
        string folder = PretrainedFolder.Resolve(directory, "vae");
        var config = AutoencoderKLConfig.FromFile(Path.Combine(folder, "config.json"));
        return CheckpointLoader.LoadPretrained(() => new AutoencoderKL(config), folder, dtype, device, variant);
    }
}
