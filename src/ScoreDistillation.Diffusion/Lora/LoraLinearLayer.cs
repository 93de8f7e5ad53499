using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Lora;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// diffusers <c>LoRALinearLayer</c>: up(down(x)) with down: in → r and up: r → out, no biases. Computes in its own dtype and
/// casts the result back to the input's dtype, so float32 adapters work on a half-precision UNet.
/// </summary>
internal sealed class LoraLinearLayer : nn.Module<Tensor, Tensor>
{
    internal readonly Linear down;
    internal readonly Linear up;

    public LoraLinearLayer(long inFeatures, long outFeatures, int rank, Device device) : base(nameof(LoraLinearLayer))
    {
        down = nn.Linear(inFeatures, rank, hasBias: false, device: device, dtype: ScalarType.Float32);
        up = nn.Linear(rank, outFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        RegisterComponents();
    }

    /// <summary>ProlificDreamer / diffusers initialisation: down ~ N(0, 1/r²), up = 0.</summary>
    public void Initialise(Generator generator, int rank)
    {
        using var _ = no_grad();
        down.weight!.normal_(0, 1.0 / rank, generator);
        up.weight!.zero_();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var dtype = down.weight!.dtype;
        return up.call(down.call(x.to(dtype))).to(x.dtype).MoveToOuterDisposeScope();
    }
}
