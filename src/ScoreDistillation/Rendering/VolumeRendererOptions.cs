namespace ScoreDistillation.Rendering;

/// <summary>How raw colour features become RGB (threestudio <c>no-material</c> activations).</summary>
public enum MaterialActivation
{
    /// <summary>sigmoid(x) (ScaleDreamer SD configs).</summary>
    Sigmoid,
    /// <summary>sigmoid(x)·1.002 − 0.001 (Triplane-Transformer config).</summary>
    SigmoidMipNerf,
}

/// <summary>Density bias added to raw density in NeRF mode before the softplus.</summary>
public enum DensityBias
{
    /// <summary>No bias: the field returns the final pre-activation density.</summary>
    None,
    /// <summary>Magic3D blob: <c>BlobDensity·(1 − ‖p‖/BlobRadius)</c>.</summary>
    Blob,
}

/// <summary>
/// Volume renderer settings. Defaults are ScaleDreamer's <c>generative-space-volsdf-volume-renderer</c>: VolSDF with a
/// fixed inv_std of 30, 128 stratified proposal intervals (no gradient) + 64 importance intervals by inverse CDF
/// (nerfacc semantics) ⇒ 193 rendered samples per ray, near 0.1, far 4.0 along each unit ray.
/// </summary>
public sealed record VolumeRendererOptions
{
    /// <summary>Proposal intervals per ray (reference <c>num_samples_per_ray_importance</c> = 128).</summary>
    public int ProposalSamples { get; init; } = 128;

    /// <summary>Importance intervals per ray drawn from the proposal CDF (reference <c>num_samples_per_ray</c> = 64).</summary>
    public int ImportanceSamples { get; init; } = 64;

    /// <summary>Near plane along each unit ray (0.1).</summary>
    public double Near { get; init; } = 0.1;

    /// <summary>Far plane along each unit ray (4.0; not clipped to the bounding box).</summary>
    public double Far { get; init; } = 4.0;

    /// <summary>Jitter the proposal and importance samples (one uniform offset per ray, nerfacc style) when a generator is given (default true).</summary>
    public bool Stratified { get; init; } = true;

    /// <summary>VolSDF inverse standard deviation 1/β (fixed 30 = exp(10·0.340119); clamped to [0, 80] as the reference).</summary>
    public double InvStd { get; init; } = 30.0;

    /// <summary>NeRF-mode density bias (default Magic3D blob).</summary>
    public DensityBias DensityBias { get; init; } = DensityBias.Blob;

    /// <summary>Blob density scale (Magic3D: 10).</summary>
    public double BlobDensity { get; init; } = 10.0;

    /// <summary>Blob radius (Magic3D: 0.5).</summary>
    public double BlobRadius { get; init; } = 0.5;

    /// <summary>Colour activation of the raw features.</summary>
    public MaterialActivation Material { get; init; } = MaterialActivation.Sigmoid;

    /// <summary>Compute finite-difference gradients and normals (3 extra geometry evaluations per sample; needed for the eikonal loss; default true).</summary>
    public bool ComputeNormals { get; init; } = true;

    /// <summary>Finite-difference step in world units (0.01); offset points are clamped to the field's box.</summary>
    public double NormalEpsilon { get; init; } = 0.01;

    /// <summary>
    /// Points per chunk for renders without gradient (reference <c>eval_chunk_size</c> 320000); rays are processed in chunks of
    /// ⌈ChunkPoints / samples⌉ so a 512×512 evaluation render fits in memory. Renders with gradient are never chunked.
    /// </summary>
    public int ChunkPoints { get; init; } = 320_000;

    /// <summary>Samples rendered per ray: ProposalSamples + ImportanceSamples + 1.</summary>
    public int RenderedSamples => ProposalSamples + ImportanceSamples + 1;

    /// <summary>Throws if a setting is out of range.</summary>
    public void Validate()
    {
        if (ProposalSamples < 2) throw new ArgumentException($"ProposalSamples must be ≥ 2, got {ProposalSamples}.");
        if (ImportanceSamples < 2) throw new ArgumentException($"ImportanceSamples must be ≥ 2, got {ImportanceSamples}.");
        if (!(Near >= 0 && Far > Near)) throw new ArgumentException($"Need 0 ≤ Near < Far, got Near {Near}, Far {Far}.");
        if (!(InvStd > 0)) throw new ArgumentException($"InvStd must be positive, got {InvStd}.");
        if (!(NormalEpsilon > 0)) throw new ArgumentException($"NormalEpsilon must be positive, got {NormalEpsilon}.");
        if (ChunkPoints < 1) throw new ArgumentException($"ChunkPoints must be ≥ 1, got {ChunkPoints}.");
        if (DensityBias == DensityBias.Blob && !(BlobRadius > 0)) throw new ArgumentException($"BlobRadius must be positive, got {BlobRadius}.");
    }
}
