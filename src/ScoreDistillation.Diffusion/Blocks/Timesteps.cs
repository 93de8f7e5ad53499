using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

/// <summary>diffusers <c>Timesteps</c>: the sinusoidal timestep embedding (no parameters).</summary>
internal sealed class Timesteps : nn.Module<Tensor, Tensor>
{
    private readonly long _dim;
    private readonly bool _flipSinToCos;
    private readonly double _downscaleFreqShift;

    public Timesteps(long numChannels, bool flipSinToCos, double downscaleFreqShift) : base(nameof(Timesteps))
    {
        _dim = numChannels;
        _flipSinToCos = flipSinToCos;
        _downscaleFreqShift = downscaleFreqShift;
        RegisterComponents();
    }

    /// <summary>timesteps [N] (any numeric dtype) → [N, dim] float32.</summary>
    public override Tensor forward(Tensor timesteps)
    {
        if (timesteps.dim() != 1)
            throw new ArgumentException($"Timesteps: expected a 1-D tensor of timesteps, got shape [{string.Join(", ", timesteps.shape)}].");
        using var scope = NewDisposeScope();
        long half = _dim / 2;
        // Same float32 operation order as diffusers' get_timestep_embedding.
        var exponent = arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * (-Math.Log(10000.0));
        exponent = exponent / (half - _downscaleFreqShift);
        var freqs = exponent.exp();
        var args = timesteps.unsqueeze(1).to(ScalarType.Float32) * freqs.unsqueeze(0);
        var emb = _flipSinToCos ? cat(new[] { args.cos(), args.sin() }, -1) : cat(new[] { args.sin(), args.cos() }, -1);
        if (_dim % 2 == 1)
            emb = nn.functional.pad(emb, new long[] { 0, 1 });
        return emb.MoveToOuterDisposeScope();
    }
}
