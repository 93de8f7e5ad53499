using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>ResnetBlock2D</c>: two GroupNorm → act → 3×3 conv stages with an optional time-embedding injection and a 1×1 shortcut when channels change.</summary>
internal sealed class ResnetBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear? time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Dropout dropout;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;

    private readonly Func<Tensor, Tensor> _act;
    private readonly double _outputScaleFactor;
    private readonly bool _scaleShift;

    /// <param name="inChannels">Input channels.</param>
    /// <param name="outChannels">Output channels.</param>
    /// <param name="tembChannels">Time-embedding width, or null for blocks without time input (VAE).</param>
    /// <param name="groups">GroupNorm groups.</param>
    /// <param name="eps">GroupNorm epsilon.</param>
    /// <param name="actFn">Activation name.</param>
    /// <param name="timeEmbeddingNorm">"default" (add) or "scale_shift".</param>
    /// <param name="outputScaleFactor">Divisor of the residual sum.</param>
    /// <param name="dropoutP">Dropout probability (inactive in eval).</param>
    /// <param name="f">Layer factory (device, dtype).</param>
    public ResnetBlock2D(long inChannels, long outChannels, long? tembChannels, long groups, double eps, string actFn,
        string timeEmbeddingNorm, double outputScaleFactor, double dropoutP, LayerFactory f)
        : base(nameof(ResnetBlock2D))
    {
        _scaleShift = timeEmbeddingNorm switch
        {
            "default" => false,
            "scale_shift" => true,
            _ => throw new NotSupportedException($"ResnetBlock2D: unsupported time_embedding_norm '{timeEmbeddingNorm}' (supported: default, scale_shift)."),
        };
        _act = Activations.Get(actFn);
        _outputScaleFactor = outputScaleFactor;
        norm1 = f.GroupNorm(groups, inChannels, eps);
        conv1 = f.Conv2d(inChannels, outChannels, 3, padding: 1);
        if (tembChannels is long t)
            time_emb_proj = f.Linear(t, _scaleShift ? 2 * outChannels : outChannels);
        norm2 = f.GroupNorm(groups, outChannels, eps);
        dropout = nn.Dropout(dropoutP);
        conv2 = f.Conv2d(outChannels, outChannels, 3, padding: 1);
        if (inChannels != outChannels)
            conv_shortcut = f.Conv2d(inChannels, outChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor? temb)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(_act(norm1.call(input)));
        Tensor? t = null;
        if (time_emb_proj is not null && temb is not null)
            t = time_emb_proj.call(_act(temb)).unsqueeze(-1).unsqueeze(-1);
        if (t is not null && !_scaleShift)
            h = h + t;
        h = norm2.call(h);
        if (t is not null && _scaleShift)
        {
            var parts = t.chunk(2, 1);
            h = h * (parts[0] + 1) + parts[1];
        }
        h = conv2.call(dropout.call(_act(h)));
        var shortcut = conv_shortcut is null ? input : conv_shortcut.call(input);
        var output = shortcut + h;
        if (_outputScaleFactor != 1.0)
            output = output / _outputScaleFactor;
        return output.MoveToOuterDisposeScope();
    }
}
