namespace ScoreDistillation.Diffusion.Lora;

/// <summary>
/// How <see cref="UNetLoraAdapter"/> adapts a UNet. Defaults are ProlificDreamer's (threestudio
/// <c>stable-diffusion-vsd-guidance</c>): rank 4, scale 1 (no network alpha), a 16 → 4·C → 4·C SiLU camera MLP.
/// </summary>
public sealed record LoraOptions
{
    /// <summary>Rank r of every adapter (diffusers' default 4).</summary>
    public int Rank { get; init; } = 4;

    /// <summary>Multiplier of the adapter output, W x + scale · up(down(x)) (diffusers' <c>cross_attention_kwargs["scale"]</c>).</summary>
    public double Scale { get; init; } = 1.0;

    /// <summary>Adds the camera MLP (<c>class_embedding</c>) whose output is added to the UNet's time embedding.</summary>
    public bool CameraEmbedding { get; init; } = true;

    /// <summary>Width of the camera input (16 = a row-major flattened 4×4 camera-to-world matrix).</summary>
    public int CameraInputDim { get; init; } = 16;

    /// <summary>Seed of the initialisation (down ~ N(0, 1/r²), up = 0, camera MLP with PyTorch's default U(±1/√fan_in)).</summary>
    public long Seed { get; init; }
}
