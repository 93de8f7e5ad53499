using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>diffusers <c>GEGLU</c>: one projection to twice the width, split into value and gate, value · GELU(gate) (exact erf GELU).</summary>
internal sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    private readonly Linear proj;

    public GEGLU(long dimIn, long dimOut, LayerFactory f) : base(nameof(GEGLU))
    {
        proj = f.Linear(dimIn, dimOut * 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var parts = proj.call(input).chunk(2, -1);
        return (parts[0] * nn.functional.gelu(parts[1])).MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>GELU</c> projection: Linear then GELU (exact or tanh-approximate).</summary>
internal sealed class GELUProjection : nn.Module<Tensor, Tensor>
{
    private readonly Linear proj;
    private readonly bool _approximate;

    public GELUProjection(long dimIn, long dimOut, bool approximate, LayerFactory f) : base("GELU")
    {
        proj = f.Linear(dimIn, dimOut);
        _approximate = approximate;
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var h = proj.call(input);
        h = _approximate ? nn.functional.gelu(h, approximate: GELU.Approximate.tanh) : nn.functional.gelu(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>FeedForward</c>: net.0 = activation projection (GEGLU by default), net.1 = dropout, net.2 = Linear back to dim.</summary>
internal sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<nn.Module<Tensor, Tensor>> net;

    public FeedForward(long dim, long? dimOut, int mult, string activationFn, double dropoutP, LayerFactory f, long? innerDim = null)
        : base(nameof(FeedForward))
    {
        long inner = innerDim ?? dim * mult;
        nn.Module<Tensor, Tensor> act = activationFn switch
        {
            "geglu" => new GEGLU(dim, inner, f),
            "gelu" => new GELUProjection(dim, inner, false, f),
            "gelu-approximate" => new GELUProjection(dim, inner, true, f),
            _ => throw new NotSupportedException($"FeedForward: unsupported activation_fn '{activationFn}' (supported: geglu, gelu, gelu-approximate)."),
        };
        net = nn.ModuleList<nn.Module<Tensor, Tensor>>(act, nn.Dropout(dropoutP), f.Linear(inner, dimOut ?? dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var h = input;
        foreach (var m in net) h = m.call(h);
        return h.MoveToOuterDisposeScope();
    }
}
