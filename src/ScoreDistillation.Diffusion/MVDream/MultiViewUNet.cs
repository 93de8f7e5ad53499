using ScoreDistillation.Diffusion.Unet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

#pragma warning disable IDE1006 // Field names are state_dict keys.

/// <summary>
/// MVDream's multi-view denoiser: the Stable Diffusion UNet in which every transformer block runs self-attention jointly over
/// the views of one sample ((b·f, l, c) → (b, f·l, c)) while cross-attention and feed-forward stay per view, plus a camera MLP
/// (16 → 4·C → 4·C, SiLU) whose output is added to the time embedding. Views of one sample are contiguous in the batch.
/// </summary>
/// <remarks>
/// The UNet is the diffusers <see cref="UNet2DConditionModel"/> (keys <c>unet.*</c>); the official LDM-named checkpoints load through
/// <see cref="LdmKeyMap"/>, derived from the configuration.
/// </remarks>
public sealed class MultiViewUNet : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    internal readonly UNet2DConditionModel unet;
    internal readonly Sequential camera_embed;

    /// <summary>The MVDream configuration.</summary>
    public MultiViewUNetConfig Config { get; }

    /// <summary>Views per sample used by <see cref="forward"/> (4 for the published models).</summary>
    public int NumFrames { get; }

    /// <summary>The underlying diffusers UNet.</summary>
    public UNet2DConditionModel UNet => unet;

    /// <summary>Builds the model with default-initialised weights.</summary>
    /// <param name="config">MVDream configuration.</param>
    /// <param name="numFrames">Views per sample (4 by default).</param>
    /// <param name="device">Device (the <c>meta</c> device builds shapes only).</param>
    /// <param name="dtype">Parameter dtype.</param>
    public MultiViewUNet(MultiViewUNetConfig config, int numFrames = 4, Device? device = null, ScalarType? dtype = null) : base(nameof(MultiViewUNet))
    {
        ArgumentNullException.ThrowIfNull(config);
        if (numFrames < 1) throw new ArgumentOutOfRangeException(nameof(numFrames), numFrames, "Views per sample must be ≥ 1.");
        Config = config;
        NumFrames = numFrames;
        unet = new UNet2DConditionModel(config.ToUNetConfig(), device, dtype);
        int d = config.TimeEmbeddingDim;
        camera_embed = nn.Sequential(
            ("0", nn.Linear(config.CameraDim, d, device: device, dtype: dtype)),
            ("1", nn.SiLU()),
            ("2", nn.Linear(d, d, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>ε̂ for x [B·F, C, h, w], timesteps [B·F], context [B·F, 77, D] with <see cref="NumFrames"/> views and no camera.</summary>
    public override Tensor forward(Tensor x, Tensor timesteps, Tensor context) => Forward(x, timesteps, context, null, NumFrames);

    /// <summary>Predicts ε for multi-view latents.</summary>
    /// <param name="x">Noisy latents [B·F, C, h, w], the F views of a sample contiguous.</param>
    /// <param name="timesteps">Timesteps [B·F] (or a scalar).</param>
    /// <param name="context">Text tokens [B·F, L, D], one row per view.</param>
    /// <param name="camera">Camera vectors [B·F, 16] in MVDream's convention (see <see cref="MVDreamCameras"/>), or null to skip the camera embedding.</param>
    /// <param name="numFrames">Views per sample; 1 makes every view attend only to itself.</param>
    /// <exception cref="ArgumentException">The batch is not a multiple of <paramref name="numFrames"/>, or a tensor is misshaped.</exception>
    public Tensor Forward(Tensor x, Tensor timesteps, Tensor context, Tensor? camera, int numFrames)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (numFrames < 1 || x.shape[0] % numFrames != 0)
            throw new ArgumentException($"MultiViewUNet: batch {x.shape[0]} is not a multiple of the {numFrames} views per sample.", nameof(numFrames));
        using var scope = NewDisposeScope();
        Tensor? added = null;
        if (camera is not null)
        {
            if (camera.dim() != 2 || camera.shape[0] != x.shape[0] || camera.shape[1] != Config.CameraDim)
                throw new ArgumentException($"MultiViewUNet: camera must be [{x.shape[0]}, {Config.CameraDim}], got [{string.Join(", ", camera.shape)}].", nameof(camera));
            added = camera_embed.call(camera.to(x.dtype));
        }
        return unet.Forward(x, timesteps, context, added, numFrames).MoveToOuterDisposeScope();
    }
}
