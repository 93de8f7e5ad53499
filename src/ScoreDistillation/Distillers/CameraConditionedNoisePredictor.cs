using ScoreDistillation.Priors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ScoreDistillation.Distillers;

/// <summary>
/// A small standalone ε_φ for VSD on CPU and in tests: conv_in → (time MLP + camera MLP 16→H→H + pooled-text projection) added
/// as a bias → two residual 3×3 convolutions → conv_out. Fits any latent shape and text width.
/// </summary>
public sealed class CameraConditionedNoisePredictor : Module<Tensor, Tensor, Tensor, Tensor, Tensor>, ITrainableNoisePredictor
{
#pragma warning disable IDE1006 // snake_case fields are the state-dict keys
    readonly Conv2d conv_in, conv_1, conv_2, conv_out;
    readonly Linear time_1, time_2, camera_1, camera_2, text_proj;
#pragma warning restore IDE1006
    readonly int _hidden;

    /// <summary>Creates the network on the CPU in float32 (call <c>to(device)</c> before handing it to a distiller).</summary>
    /// <param name="latentShape">The prior's latent shape.</param>
    /// <param name="textDim">Token embedding width D.</param>
    /// <param name="hidden">Hidden channels (even).</param>
    /// <param name="predictionType">What the network predicts (ε or v; the reference trains v).</param>
    /// <param name="seed">Initialisation seed.</param>
    public CameraConditionedNoisePredictor(LatentShape latentShape, int textDim, int hidden = 32, PredictionType predictionType = PredictionType.VPrediction, long seed = 0)
        : base(nameof(CameraConditionedNoisePredictor))
    {
        if (hidden < 2 || hidden % 2 != 0) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "Hidden width must be an even number ≥ 2.");
        if (textDim < 1) throw new ArgumentOutOfRangeException(nameof(textDim));
        if (predictionType == PredictionType.Sample) throw new ArgumentException("ε_φ predicts ε or v.", nameof(predictionType));
        LatentShape = latentShape;
        PredictionType = predictionType;
        _hidden = hidden;
        int c = latentShape.Channels;
        conv_in = Conv2d(c, hidden, 3, padding: 1);
        conv_1 = Conv2d(hidden, hidden, 3, padding: 1);
        conv_2 = Conv2d(hidden, hidden, 3, padding: 1);
        conv_out = Conv2d(hidden, c, 3, padding: 1);
        time_1 = Linear(hidden, hidden);
        time_2 = Linear(hidden, hidden);
        camera_1 = Linear(16, hidden);
        camera_2 = Linear(hidden, hidden);
        text_proj = Linear(textDim, hidden);
        RegisterComponents();
        _trainable = parameters().ToArray();
        // PyTorch's default bound 1/√fan_in, drawn from a local generator so construction is reproducible and thread-safe.
        var g = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var m in new Module[] { conv_in, conv_1, conv_2, conv_out, time_1, time_2, camera_1, camera_2, text_proj })
            {
                var ps = m.parameters().ToArray();
                long fanIn = ps[0].shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                double bound = 1 / Math.Sqrt(fanIn);
                foreach (var p in ps) p.uniform_(-bound, bound, g);
            }
        }
    }

    readonly Parameter[] _trainable;

    /// <inheritdoc />
    public PredictionType PredictionType { get; }

    /// <inheritdoc />
    public LatentShape LatentShape { get; }

    /// <inheritdoc />
    public IReadOnlyList<Parameter> TrainableParameters => _trainable;

    /// <inheritdoc />
    public Tensor Predict(Tensor noisyLatents, Tensor timesteps, Tensor text, Tensor cameras) => forward(noisyLatents, timesteps, text, cameras);

    /// <summary>Raw prediction for x_t [N, C, h, w], t [N], text [N, L, D], cameras [N, 16].</summary>
    public override Tensor forward(Tensor x, Tensor t, Tensor text, Tensor cameras)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(cameras);
        if (x.dim() != 4 || x.shape[1] != LatentShape.Channels) throw new ArgumentException($"x_t must be [N, {LatentShape.Channels}, h, w], got [{string.Join(", ", x.shape)}].", nameof(x));
        if (cameras.dim() != 2 || cameras.shape[1] != 16) throw new ArgumentException($"Cameras must be [N, 16], got [{string.Join(", ", cameras.shape)}].", nameof(cameras));
        using var scope = NewDisposeScope();
        int half = _hidden / 2;
        var freqs = exp(arange(half, ScalarType.Float32, x.device) * (-Math.Log(10000.0) / half));
        var args = t.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        var temb = cat(new[] { cos(args), sin(args) }, 1).to(x.dtype);
        var emb = time_2.forward(functional.silu(time_1.forward(temb)))
                  + camera_2.forward(functional.silu(camera_1.forward(cameras.to(x.dtype))))
                  + text_proj.forward(text.to(x.dtype).mean(new long[] { 1 }));
        var h = conv_in.forward(x) + emb.unsqueeze(-1).unsqueeze(-1);
        h = h + conv_1.forward(functional.silu(h));
        h = h + conv_2.forward(functional.silu(h));
        return conv_out.forward(functional.silu(h)).MoveToOuterDisposeScope();
    }
}
