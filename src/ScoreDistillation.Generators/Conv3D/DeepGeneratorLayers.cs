using TorchSharp;
using TorchSharp.Modules;
using ScoreDistillation.Rendering;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators.Conv3D;

// Small building blocks shared by 3DConv-Net and the Triplane-Transformer (both own files in this area).

/// <summary>Random initialisation that draws from an explicit <see cref="torch.Generator"/> (never the global RNG when one is given).</summary>
internal static class DeepInit
{
    /// <summary>N(0, 1) of <paramref name="shape"/> on <paramref name="device"/>. On the meta device the generator is ignored (no data exists).</summary>
    public static Tensor Randn(long[] shape, Device device, Generator? generator)
    {
        if (generator is null || device.type == DeviceType.META)
            return randn(shape, ScalarType.Float32, device);
        return MoveTo(randn(shape, ScalarType.Float32, generator.device, generator: generator), device);
    }

    /// <summary>U(−bound, bound) of <paramref name="shape"/> on <paramref name="device"/>.</summary>
    public static Tensor Uniform(long[] shape, double bound, Device device, Generator? generator)
    {
        if (generator is null || device.type == DeviceType.META)
        {
            var t = empty(shape, ScalarType.Float32, device);
            if (device.type != DeviceType.META)
                using (no_grad()) t.uniform_(-bound, bound);
            return t;
        }
        var u = rand(shape, ScalarType.Float32, generator.device, generator: generator);
        u.mul_(2 * bound).sub_(bound);
        return MoveTo(u, device);
    }

    /// <summary>Moves <paramref name="t"/> to <paramref name="device"/>, disposing the source when a copy was made.</summary>
    public static Tensor MoveTo(Tensor t, Device device)
    {
        if (t.device_type == device.type && t.device_index == device.index) return t;
        var moved = t.to(device);
        if (!ReferenceEquals(moved, t)) t.Dispose();
        return moved;
    }

    /// <summary>A parameter that owns <paramref name="value"/> and survives any enclosing dispose scope.</summary>
    public static Parameter Param(Tensor value)
    {
        var p = new Parameter(value.DetachFromDisposeScope());
        p.DetachFromDisposeScope();
        return p;
    }
}

/// <summary>
/// <c>torch.nn.Linear</c> with PyTorch's default initialisation (weight and bias U(±1/√fan_in)) drawn from an explicit
/// generator. State-dict keys <c>weight</c> and <c>bias</c>.
/// </summary>
internal sealed class SeededLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field names are the upstream state-dict keys
    private Parameter weight;
    private Parameter? bias;
#pragma warning restore IDE1006

    public SeededLinear(long inFeatures, long outFeatures, bool hasBias, Device device, Generator? generator) : base(nameof(SeededLinear))
    {
        double bound = 1.0 / Math.Sqrt(inFeatures);
        weight = DeepInit.Param(DeepInit.Uniform([outFeatures, inFeatures], bound, device, generator));
        if (hasBias) bias = DeepInit.Param(DeepInit.Uniform([outFeatures], bound, device, generator));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => nn.functional.linear(input, weight, bias);
}

/// <summary>
/// threestudio's <c>VanillaMLP</c>: bias-free Linear layers with ReLU between them and no output activation
/// (<c>n_hidden_layers</c> hidden layers of <c>n_neurons</c>). State-dict keys <c>layers.{0,2,…}.weight</c>.
/// </summary>
internal sealed class BiasFreeReluMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private ModuleList<nn.Module<Tensor, Tensor>> layers;
#pragma warning restore IDE1006

    public BiasFreeReluMlp(int inputs, int hidden, int hiddenLayers, int outputs, Device device, Generator? generator) : base(nameof(BiasFreeReluMlp))
    {
        if (hiddenLayers < 1) throw new ArgumentOutOfRangeException(nameof(hiddenLayers), hiddenLayers, "The MLP needs at least one hidden layer.");
        layers = new ModuleList<nn.Module<Tensor, Tensor>>();
        layers.append(new SeededLinear(inputs, hidden, false, device, generator));
        layers.append(nn.ReLU());
        for (int i = 0; i < hiddenLayers - 1; i++)
        {
            layers.append(new SeededLinear(hidden, hidden, false, device, generator));
            layers.append(nn.ReLU());
        }
        layers.append(new SeededLinear(hidden, outputs, false, device, generator));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input;
        foreach (var layer in layers) x = layer.call(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The geometry module of both SDF generators (state dict as upstream <c>geometry.*</c>): the space generator
/// (<c>space_generator.*</c>: 3DConv-Net's StyleGAN or the Triplane-Transformer), the SDF MLP, the feature MLP and the
/// bbox buffer. The space generator is built before the MLPs, so a shared init generator draws in upstream order.
/// </summary>
internal sealed class SdfGeometryModule<TSpace> : nn.Module where TSpace : nn.Module
{
#pragma warning disable IDE1006 // field names are the upstream state-dict keys
    private TSpace space_generator;
    private BiasFreeReluMlp sdf_network;
    private BiasFreeReluMlp feature_network;
    private Tensor bbox;
#pragma warning restore IDE1006

    /// <param name="name">Module name.</param>
    /// <param name="spaceGenerator">The already built space generator (owned from now on).</param>
    /// <param name="features">Width of the sampled features the MLPs decode.</param>
    /// <param name="mlpHidden">Hidden width of both MLPs.</param>
    /// <param name="mlpHiddenLayers">Hidden layers of both MLPs.</param>
    /// <param name="radius">Half-size of the bounding box.</param>
    /// <param name="device">Device of the parameters.</param>
    /// <param name="generator">Random source of the MLP weights.</param>
    public SdfGeometryModule(string name, TSpace spaceGenerator, int features, int mlpHidden, int mlpHiddenLayers, double radius, Device device, Generator? generator)
        : base(name)
    {
        space_generator = spaceGenerator;
        sdf_network = new BiasFreeReluMlp(features, mlpHidden, mlpHiddenLayers, 1, device, generator);
        feature_network = new BiasFreeReluMlp(features, mlpHidden, mlpHiddenLayers, 3, device, generator);
        float r = (float)radius;
        bbox = tensor(new[] { -r, -r, -r, r, r, r }, [2, 3], ScalarType.Float32, device).DetachFromDisposeScope();
        RegisterComponents();
    }

    public TSpace SpaceGenerator => space_generator;

    public BiasFreeReluMlp SdfNetwork => sdf_network;

    public BiasFreeReluMlp FeatureNetwork => feature_network;
}

/// <summary>
/// The decoding both SDF fields share: the SDF MLP plus the sphere bias (geometry) and the feature MLP (raw colour
/// features), applied to what the field's own sampler returns. Holds no tensors, so repeated fields share one.
/// </summary>
internal sealed class SdfFeatureDecoder
{
    private readonly nn.Module<Tensor, Tensor> sdfNetwork;
    private readonly nn.Module<Tensor, Tensor> featureNetwork;
    private readonly double biasRadius;

    public SdfFeatureDecoder(nn.Module<Tensor, Tensor> sdfNetwork, nn.Module<Tensor, Tensor> featureNetwork, double biasRadius)
    {
        this.sdfNetwork = sdfNetwork;
        this.featureNetwork = featureNetwork;
        this.biasRadius = biasRadius;
    }

    /// <summary>SDF with sphere bias and features at world <paramref name="points"/>; <paramref name="sampleFeatures"/> checks them.</summary>
    public FieldSample Query(Tensor points, Func<Tensor, Tensor> sampleFeatures)
    {
        using var scope = NewDisposeScope();
        var enc = sampleFeatures(points);
        var sdf = SdfFieldMath.AddSphereBias(sdfNetwork.call(enc), points, biasRadius);
        var features = featureNetwork.call(enc);
        return new FieldSample(sdf.MoveToOuterDisposeScope(), features.MoveToOuterDisposeScope());
    }

    /// <summary>SDF with sphere bias only (the feature MLP is skipped).</summary>
    public Tensor QueryGeometry(Tensor points, Func<Tensor, Tensor> sampleFeatures)
    {
        using var scope = NewDisposeScope();
        var enc = sampleFeatures(points);
        return SdfFieldMath.AddSphereBias(sdfNetwork.call(enc), points, biasRadius).MoveToOuterDisposeScope();
    }
}

/// <summary>Shared decoding steps of the SDF generators (sphere SDF bias, point checks).</summary>
internal static class SdfFieldMath
{
    /// <summary><c>sdf + (‖p‖ − r)</c> with <paramref name="points"/> in world units (threestudio <c>sdf_bias: sphere</c>).</summary>
    public static Tensor AddSphereBias(Tensor sdf, Tensor points, double biasRadius)
    {
        using var norm = points.norm(-1, true);
        using var bias = norm.sub(biasRadius);
        return sdf.add(bias);
    }

    /// <summary>Throws unless <paramref name="points"/> is [B, N, 3] with B = <paramref name="count"/>.</summary>
    public static void CheckPoints(Tensor points, int count)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 3 || points.shape[2] != 3 || points.shape[0] != count)
            throw new ArgumentException($"Points must be [{count}, N, 3] (one row per field), got [{string.Join(", ", points.shape)}].", nameof(points));
    }
}
