using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>TimestepEmbedding</c>: linear_1 → act → linear_2.</summary>
internal sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1;
    private readonly Linear linear_2;
    private readonly Func<Tensor, Tensor> _act;

    public TimestepEmbedding(long inChannels, long timeEmbedDim, string actFn, LayerFactory f) : base(nameof(TimestepEmbedding))
    {
        linear_1 = f.Linear(inChannels, timeEmbedDim);
        linear_2 = f.Linear(timeEmbedDim, timeEmbedDim);
        _act = Activations.Get(actFn);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var scope = NewDisposeScope();
        return linear_2.call(_act(linear_1.call(sample))).MoveToOuterDisposeScope();
    }
}
