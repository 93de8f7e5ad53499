using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators.Conv3D;

// 3D StyleGAN2 generator of 3DConv-Net (ScaleDreamer custom/amortized/extern/stylegan_3dconv_modules.py, adapted from CC3D).
// Field names are the upstream state-dict keys so released checkpoints map one to one.
#pragma warning disable IDE1006

/// <summary>Operations of the 3D StyleGAN2 synthesis network.</summary>
internal static class StyleGan3DOps
{
    public static readonly double LReluGain = Math.Sqrt(2.0);

    /// <summary>
    /// Modulated 3D convolution: per sample b, weights W·s_b (input channels scaled by the style), optionally
    /// demodulated by rsqrt(Σ(W·s_b)² + 1e-8) per output channel; run as one grouped convolution so samples never mix.
    /// </summary>
    /// <param name="x">[B, I, D, H, W].</param>
    /// <param name="weight">[O, I, k, k, k].</param>
    /// <param name="styles">[B, I].</param>
    /// <param name="padding">Zero padding on every side.</param>
    /// <param name="demodulate">Whether to normalise each output filter.</param>
    public static Tensor ModulatedConv3d(Tensor x, Tensor weight, Tensor styles, long padding, bool demodulate)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0];
        long o = weight.shape[0], i = weight.shape[1], kd = weight.shape[2], kh = weight.shape[3], kw = weight.shape[4];
        if (x.shape[1] != i || styles.shape[0] != b || styles.shape[1] != i)
            throw new ArgumentException($"Modulated conv: input [{string.Join(", ", x.shape)}], weight [{string.Join(", ", weight.shape)}], styles [{string.Join(", ", styles.shape)}] do not agree.");
        var w = weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1, 1);
        if (demodulate)
        {
            var d = (w.square().sum([2L, 3, 4, 5]) + 1e-8).rsqrt();
            w = w * d.reshape(b, o, 1, 1, 1, 1);
        }
        var xg = x.reshape(1, b * i, x.shape[2], x.shape[3], x.shape[4]);
        var wg = w.reshape(b * o, i, kd, kh, kw);
        var y = nn.functional.conv3d(xg, wg, null, padding: [padding, padding, padding], groups: b);
        return y.reshape(b, o, y.shape[2], y.shape[3], y.shape[4]).MoveToOuterDisposeScope();
    }

    /// <summary>Trilinear ×2 upsampling with aligned corners (upstream <c>SmoothUpsample</c>).</summary>
    public static Tensor Upsample(Tensor x) =>
        nn.functional.interpolate(x, scale_factor: [2.0, 2.0, 2.0], mode: InterpolationMode.Trilinear, align_corners: true);

    /// <summary>x·rsqrt(mean(x², dim 1) + 1e-8).</summary>
    public static Tensor Normalize2ndMoment(Tensor x)
    {
        using var sq = x.square();
        using var mean = sq.mean([1L], keepdim: true);
        using var r = mean.add(1e-8).rsqrt_();
        return x.mul(r);
    }
}

/// <summary>StyleGAN2 equalised-learning-rate fully connected layer (weight N(0,1)/lr_mul, runtime gain lr_mul/√fan_in).</summary>
internal sealed class FullyConnectedLayer : nn.Module<Tensor, Tensor>
{
    private Parameter weight;
    private Parameter bias;
    private readonly double weight_gain;
    private readonly double bias_gain;
    private readonly bool lrelu;

    public FullyConnectedLayer(int inFeatures, int outFeatures, bool lrelu, double lrMultiplier, double biasInit, Device device, Generator? generator)
        : base(nameof(FullyConnectedLayer))
    {
        using (var w = DeepInit.Randn([outFeatures, inFeatures], device, generator))
            weight = DeepInit.Param(w.div(lrMultiplier));
        bias = DeepInit.Param(full([outFeatures], biasInit, ScalarType.Float32, device));
        weight_gain = lrMultiplier / Math.Sqrt(inFeatures);
        bias_gain = lrMultiplier;
        this.lrelu = lrelu;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var w = weight * weight_gain;
        var b = bias_gain != 1 ? bias * bias_gain : bias;
        var y = addmm(b.unsqueeze(0), x, w.t(), 1, 1);
        if (lrelu) y = nn.functional.leaky_relu(y, 0.2) * StyleGan3DOps.LReluGain;
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>z → normalise → FC layers (lrelu) → concat text → embed → w.</summary>
internal sealed class MappingNetwork : nn.Module<Tensor, Tensor, Tensor>
{
    private ModuleList<FullyConnectedLayer> layers;
    private FullyConnectedLayer embed;
    private Tensor w_avg;

    public MappingNetwork(Conv3DNetOptions o, Device device, Generator? generator) : base(nameof(MappingNetwork))
    {
        layers = new ModuleList<FullyConnectedLayer>();
        // Text-conditioned: lr multiplier 1 (upstream uses 0.01 only when c_dim = 0).
        for (int i = 0; i < o.MappingLayers; i++)
            layers.append(new FullyConnectedLayer(i == 0 ? o.ZDim : o.WDim, o.WDim, true, o.MappingLrMultiplier, 0, device, generator));
        embed = new FullyConnectedLayer((o.MappingLayers == 0 ? o.ZDim : o.WDim) + o.TextDim, o.WDim, false, 1, 0, device, generator);
        w_avg = zeros([o.WDim], ScalarType.Float32, device).DetachFromDisposeScope();
        RegisterComponents();
    }

    public override Tensor forward(Tensor z, Tensor c)
    {
        using var scope = NewDisposeScope();
        var x = StyleGan3DOps.Normalize2ndMoment(z);
        foreach (var layer in layers) x = layer.call(x);
        x = embed.call(cat([x, c], 1));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Modulated 3³ conv (+ optional trilinear ×2 after it) → + noise·strength → + bias → lrelu·√2 → clamp ±256.</summary>
internal sealed class SynthesisLayer : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    private FullyConnectedLayer affine;
    private Parameter weight;
    private Tensor noise_const;
    private Parameter noise_strength;
    private Parameter bias;
    private readonly bool upsample;

    public SynthesisLayer(int inChannels, int outChannels, int wDim, int resolution, bool upsample, Device device, Generator? generator)
        : base(nameof(SynthesisLayer))
    {
        Resolution = resolution;
        this.upsample = upsample;
        affine = new FullyConnectedLayer(wDim, inChannels, false, 1, 1, device, generator);
        weight = DeepInit.Param(DeepInit.Randn([outChannels, inChannels, 3, 3, 3], device, generator));
        noise_const = DeepInit.Randn([resolution, resolution, resolution], device, generator).DetachFromDisposeScope();
        noise_strength = DeepInit.Param(zeros([1], ScalarType.Float32, device));
        bias = DeepInit.Param(zeros([outChannels], ScalarType.Float32, device));
        RegisterComponents();
    }

    /// <summary>Output resolution r (the noise is [B, 1, r, r, r]).</summary>
    public int Resolution { get; }

    /// <summary>The fixed noise used by <see cref="VoxelNoiseMode.Const"/>.</summary>
    public Tensor NoiseConst => noise_const;

    /// <param name="x">Input features.</param>
    /// <param name="w">Latent [B, w_dim].</param>
    /// <param name="noise">Unscaled noise broadcastable to [B, 1, r, r, r], or null for none.</param>
    public override Tensor forward(Tensor x, Tensor w, Tensor? noise)
    {
        using var scope = NewDisposeScope();
        var styles = affine.call(w);
        var y = StyleGan3DOps.ModulatedConv3d(x, weight, styles, 1, demodulate: true);
        if (upsample) y = StyleGan3DOps.Upsample(y);
        if (noise is not null) y = y + noise * noise_strength;
        y = nn.functional.leaky_relu(y + bias.view(1, -1, 1, 1, 1), 0.2);
        y = y.mul_(StyleGan3DOps.LReluGain).clamp_(-256, 256);
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>1³ modulated conv without demodulation (style gain 1/√C_in) + bias.</summary>
internal sealed class ToRGBLayer : nn.Module<Tensor, Tensor, Tensor>
{
    private FullyConnectedLayer affine;
    private Parameter weight;
    private Parameter bias;
    private readonly double weight_gain;

    public ToRGBLayer(int inChannels, int outChannels, int wDim, Device device, Generator? generator) : base(nameof(ToRGBLayer))
    {
        affine = new FullyConnectedLayer(wDim, inChannels, false, 1, 1, device, generator);
        weight = DeepInit.Param(DeepInit.Randn([outChannels, inChannels, 1, 1, 1], device, generator));
        bias = DeepInit.Param(zeros([outChannels], ScalarType.Float32, device));
        weight_gain = 1.0 / Math.Sqrt(inChannels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor w)
    {
        using var scope = NewDisposeScope();
        var styles = affine.call(w) * weight_gain;
        var y = StyleGan3DOps.ModulatedConv3d(x, weight, styles, 0, demodulate: false);
        return (y + bias.view(1, -1, 1, 1, 1)).MoveToOuterDisposeScope();
    }
}

/// <summary>Learned constant at the start resolution → conv1 → ToRGB.</summary>
internal sealed class SynthesisPrologue : nn.Module
{
    private Parameter @const;
    private SynthesisLayer conv1;
    private ToRGBLayer torgb;

    public SynthesisPrologue(int channels, int wDim, int resolution, int imgChannels, Device device, Generator? generator) : base(nameof(SynthesisPrologue))
    {
        @const = DeepInit.Param(DeepInit.Randn([channels, resolution, resolution, resolution], device, generator));
        conv1 = new SynthesisLayer(channels, channels, wDim, resolution, false, device, generator);
        torgb = new ToRGBLayer(channels, imgChannels, wDim, device, generator);
        RegisterComponents();
    }

    public IEnumerable<SynthesisLayer> Layers { get { yield return conv1; } }

    public (Tensor X, Tensor Img) Forward(Tensor w, Tensor? noise)
    {
        using var scope = NewDisposeScope();
        long b = w.shape[0];
        var x = @const.unsqueeze(0).expand(b, -1, -1, -1, -1);
        x = conv1.call(x, w, noise);
        var img = torgb.call(x, w);
        return (x.MoveToOuterDisposeScope(), img.MoveToOuterDisposeScope());
    }
}

/// <summary>conv0 (conv then ×2 up) → + const_bias (r ≤ bias resolution) → conv1 → ToRGB added to the upsampled skip.</summary>
internal sealed class SynthesisBlock : nn.Module
{
    private SynthesisLayer conv0;
    private SynthesisLayer conv1;
    private ToRGBLayer torgb;
    private Parameter? const_bias;

    public SynthesisBlock(int inChannels, int outChannels, int wDim, int resolution, int imgChannels, bool useConstBias, Device device, Generator? generator)
        : base(nameof(SynthesisBlock))
    {
        conv0 = new SynthesisLayer(inChannels, outChannels, wDim, resolution, true, device, generator);
        conv1 = new SynthesisLayer(outChannels, outChannels, wDim, resolution, false, device, generator);
        torgb = new ToRGBLayer(outChannels, imgChannels, wDim, device, generator);
        if (useConstBias)
        {
            using var r = DeepInit.Randn([outChannels, resolution, resolution, resolution], device, generator);
            const_bias = DeepInit.Param(r.div(Math.Sqrt(outChannels)));
        }
        RegisterComponents();
    }

    public IEnumerable<SynthesisLayer> Layers { get { yield return conv0; yield return conv1; } }

    public (Tensor X, Tensor Img) Forward(Tensor x, Tensor img, Tensor w, Tensor? noise0, Tensor? noise1)
    {
        using var scope = NewDisposeScope();
        var h = conv0.call(x, w, noise0);
        if (const_bias is not null) h = h + const_bias;
        h = conv1.call(h, w, noise1);
        var y = torgb.call(h, w);
        var up = StyleGan3DOps.Upsample(img);
        var outImg = up.add_(y);
        return (h.MoveToOuterDisposeScope(), outImg.MoveToOuterDisposeScope());
    }
}

/// <summary>Prologue at the start resolution, then one block per doubling up to the output resolution.</summary>
internal sealed class SynthesisNetwork3D : nn.Module
{
    private SynthesisPrologue first_block;
    private ModuleList<SynthesisBlock> blocks;

    public SynthesisNetwork3D(Conv3DNetOptions o, Device device, Generator? generator) : base(nameof(SynthesisNetwork3D))
    {
        var resolutions = o.BlockResolutions;
        first_block = new SynthesisPrologue(o.ChannelsAt(resolutions[0]), o.WDim, resolutions[0], o.FeatureChannels, device, generator);
        blocks = new ModuleList<SynthesisBlock>();
        for (int i = 1; i < resolutions.Count; i++)
        {
            int r = resolutions[i];
            blocks.append(new SynthesisBlock(o.ChannelsAt(r / 2), o.ChannelsAt(r), o.WDim, r, o.FeatureChannels, r <= o.BiasResolution, device, generator));
        }
        RegisterComponents();
    }

    /// <summary>Every noise-taking layer, in the order the explicit noise list uses.</summary>
    public IReadOnlyList<SynthesisLayer> NoiseLayers => first_block.Layers.Concat(blocks.SelectMany(b => b.Layers)).ToArray();

    /// <param name="w">[B, w_dim], shared by every layer (upstream broadcasts one w to all layers).</param>
    /// <param name="noise">One entry per <see cref="NoiseLayers"/> (entries may be null).</param>
    public Tensor Forward(Tensor w, IReadOnlyList<Tensor?> noise)
    {
        using var scope = NewDisposeScope();
        var (x, img) = first_block.Forward(w, noise[0]);
        int k = 1;
        foreach (var block in blocks)
        {
            (x, img) = block.Forward(x, img, w, noise[k], noise[k + 1]);
            k += 2;
        }
        return img.MoveToOuterDisposeScope();
    }
}

/// <summary>Upstream <c>Generator</c>: mapping + synthesis.</summary>
internal sealed class StyleGan3DGenerator : nn.Module
{
    private SynthesisNetwork3D synthesis;
    private MappingNetwork mapping;

    public StyleGan3DGenerator(Conv3DNetOptions o, Device device, Generator? generator) : base(nameof(StyleGan3DGenerator))
    {
        synthesis = new SynthesisNetwork3D(o, device, generator);
        mapping = new MappingNetwork(o, device, generator);
        RegisterComponents();
    }

    public SynthesisNetwork3D Synthesis => synthesis;

    public MappingNetwork Mapping => mapping;
}
#pragma warning restore IDE1006
