using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Blocks;

/// <summary>A down block of a UNet: consumes hidden states, appends its skip outputs to <c>skips</c>.</summary>
internal abstract class UNetDownBlock : nn.Module
{
    protected UNetDownBlock(string name) : base(name) { }

    /// <summary>Runs the block; every resnet (and attention) output and the downsampled output are appended to <paramref name="skips"/>.</summary>
    public abstract Tensor Forward(Tensor hidden, Tensor temb, Tensor? encoderHiddenStates, int numFrames, List<Tensor> skips);
}

/// <summary>An up block of a UNet: concatenates skips one per resnet, then upsamples.</summary>
internal abstract class UNetUpBlock : nn.Module
{
    protected UNetUpBlock(string name) : base(name) { }

    /// <summary>Number of skip tensors the block consumes (= its resnets).</summary>
    public abstract int SkipCount { get; }

    /// <summary>Runs the block; <paramref name="skips"/> is consumed from its end.</summary>
    public abstract Tensor Forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor? encoderHiddenStates, long[]? upsampleSize, int numFrames);
}
