using ScoreDistillation.Diffusion.Blocks;
using ScoreDistillation.Diffusion.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Unet;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// The diffusers <c>UNet2DConditionModel</c> (Stable Diffusion 1.x/2.x family) built from any
/// <see cref="UNet2DConditionConfig"/>. Parameter names equal the diffusers <c>state_dict</c> keys, so diffusers
/// checkpoints load without key mapping. Predicts ε (or v) for noisy latents, timesteps and text tokens.
/// </summary>
public sealed class UNet2DConditionModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    internal readonly Conv2d conv_in;
    internal readonly Timesteps time_proj;
    internal readonly TimestepEmbedding time_embedding;
    internal readonly ModuleList<UNetDownBlock> down_blocks;
    internal readonly UNetMidBlock2DCrossAttn? mid_block;
    internal readonly ModuleList<UNetUpBlock> up_blocks;
    internal readonly GroupNorm conv_norm_out;
    internal readonly Conv2d conv_out;

    private readonly Func<Tensor, Tensor> _act;

    /// <summary>The configuration the model was built from.</summary>
    public UNet2DConditionConfig Config { get; }

    /// <summary>Width of the time embedding (what an extra embedding passed to <see cref="Forward"/> must match).</summary>
    public int TimeEmbeddingDim { get; }

    /// <summary>Number of ×2 upsamplers (the input size should be a multiple of 2^this; other sizes are handled like diffusers).</summary>
    public int NumUpsamplers { get; }

    /// <summary>Called with (module path, tensor) for intermediate activations; for debugging and parity tests.</summary>
    internal Action<string, Tensor>? Trace { get; set; }

    /// <summary>Builds the model with default-initialised weights.</summary>
    /// <param name="config">The diffusers configuration.</param>
    /// <param name="device">Device for the parameters (the <c>meta</c> device builds shapes only); default CPU.</param>
    /// <param name="dtype">Parameter dtype; default float32.</param>
    /// <exception cref="NotSupportedException">The configuration uses a diffusers feature this port does not implement (the message names it).</exception>
    /// <exception cref="InvalidDataException">Inconsistent per-block lists.</exception>
    public UNet2DConditionModel(UNet2DConditionConfig config, Device? device = null, ScalarType? dtype = null)
        : base(nameof(UNet2DConditionModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        Validate(config);
        var f = new LayerFactory(device, dtype);
        int n = config.DownBlockTypes.Count;
        var boc = config.BlockOutChannels.ToArray();
        var heads = ConfigJson.PerBlock(config.NumAttentionHeads ?? config.AttentionHeadDim, n, config.NumAttentionHeads is null ? "attention_head_dim" : "num_attention_heads");
        var onlyCross = ConfigJson.PerBlock(config.OnlyCrossAttention, n, "only_cross_attention");
        var layers = ConfigJson.PerBlock(config.LayersPerBlock, n, "layers_per_block");
        var crossDim = ConfigJson.PerBlock(config.CrossAttentionDim, n, "cross_attention_dim");
        var tLayers = ConfigJson.PerBlock(config.TransformerLayersPerBlock, n, "transformer_layers_per_block");
        long groups = config.NormNumGroups!.Value;
        int timeEmbedDim = config.TimeEmbeddingDim ?? boc[0] * 4;
        TimeEmbeddingDim = timeEmbedDim;
        _act = Activations.Get(config.ActFn);

        conv_in = f.Conv2d(config.InChannels, boc[0], config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2);
        time_proj = new Timesteps(boc[0], config.FlipSinToCos, config.FreqShift);
        time_embedding = new TimestepEmbedding(boc[0], timeEmbedDim, config.ActFn, f);
        var r = new ResnetSettings(timeEmbedDim, config.NormEps, config.ActFn, groups, config.ResnetTimeScaleShift, config.Dropout, f);
        CrossAttentionSettings Attn(int i, int[] h, int[] cd, int[] tl, bool[] oc) =>
            new(h[i], cd[i], tl[i], config.UseLinearProjection, oc[i], config.UpcastAttention);

        down_blocks = nn.ModuleList<UNetDownBlock>();
        int outCh = boc[0];
        for (int i = 0; i < n; i++)
        {
            int inCh = outCh;
            outCh = boc[i];
            bool addDown = i != n - 1;
            down_blocks.Add(config.DownBlockTypes[i] switch
            {
                "CrossAttnDownBlock2D" => new CrossAttnDownBlock2D(layers[i], inCh, outCh, addDown, config.DownsamplePadding, r, Attn(i, heads, crossDim, tLayers, onlyCross)),
                "DownBlock2D" => new DownBlock2D(layers[i], inCh, outCh, addDown, config.DownsamplePadding, r),
                var t => throw new NotSupportedException($"UNet2DConditionModel: unsupported down block type '{t}' (supported: CrossAttnDownBlock2D, DownBlock2D)."),
            });
        }

        if (config.MidBlockType is not null)
            mid_block = new UNetMidBlock2DCrossAttn(boc[^1], 1, config.MidBlockScaleFactor, r,
                new CrossAttentionSettings(heads[^1], crossDim[^1], tLayers[^1], config.UseLinearProjection, false, config.UpcastAttention));

        var rBoc = boc.Reverse().ToArray();
        var rHeads = heads.Reverse().ToArray();
        var rLayers = layers.Reverse().ToArray();
        var rCross = crossDim.Reverse().ToArray();
        var rTLayers = tLayers.Reverse().ToArray();
        var rOnly = onlyCross.Reverse().ToArray();
        up_blocks = nn.ModuleList<UNetUpBlock>();
        outCh = rBoc[0];
        for (int i = 0; i < n; i++)
        {
            int prev = outCh;
            outCh = rBoc[i];
            int inCh = rBoc[Math.Min(i + 1, n - 1)];
            bool addUp = i != n - 1;
            if (addUp) NumUpsamplers++;
            up_blocks.Add(config.UpBlockTypes[i] switch
            {
                "CrossAttnUpBlock2D" => new CrossAttnUpBlock2D(rLayers[i] + 1, inCh, prev, outCh, addUp, r, Attn(i, rHeads, rCross, rTLayers, rOnly)),
                "UpBlock2D" => new UpBlock2D(rLayers[i] + 1, inCh, prev, outCh, addUp, r),
                var t => throw new NotSupportedException($"UNet2DConditionModel: unsupported up block type '{t}' (supported: CrossAttnUpBlock2D, UpBlock2D)."),
            });
        }

        conv_norm_out = f.GroupNorm(groups, boc[0], config.NormEps);
        conv_out = f.Conv2d(boc[0], config.OutChannels, config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2);
        RegisterComponents();
    }

    static void Validate(UNet2DConditionConfig c)
    {
        void Unsupported(bool bad, string key, object? value, string supported)
        {
            if (bad) throw new NotSupportedException($"UNet2DConditionModel: config '{key}' = {value ?? "null"} is not supported ({supported}).");
        }
        Unsupported(c.TimeEmbeddingType != "positional", "time_embedding_type", c.TimeEmbeddingType, "only 'positional'");
        Unsupported(c.ClassEmbedType is not null, "class_embed_type", c.ClassEmbedType, "only null; pass extra embeddings to Forward");
        Unsupported(c.NumClassEmbeds is not null, "num_class_embeds", c.NumClassEmbeds, "only null; pass extra embeddings to Forward");
        Unsupported(c.AdditionEmbedType is not null, "addition_embed_type", c.AdditionEmbedType, "only null");
        Unsupported(c.EncoderHidDim is not null, "encoder_hid_dim", c.EncoderHidDim, "only null");
        Unsupported(c.TimeCondProjDim is not null, "time_cond_proj_dim", c.TimeCondProjDim, "only null");
        Unsupported(c.TimeEmbeddingActFn is not null, "time_embedding_act_fn", c.TimeEmbeddingActFn, "only null");
        Unsupported(c.TimestepPostAct is not null, "timestep_post_act", c.TimestepPostAct, "only null");
        Unsupported(c.DualCrossAttention, "dual_cross_attention", true, "only false");
        Unsupported(c.AttentionType != "default", "attention_type", c.AttentionType, "only 'default'");
        Unsupported(c.NormNumGroups is null, "norm_num_groups", null, "a group count is required");
        Unsupported(c.MidBlockType is not null && c.MidBlockType != "UNetMidBlock2DCrossAttn", "mid_block_type", c.MidBlockType, "UNetMidBlock2DCrossAttn or null");
        if (c.DownBlockTypes.Count == 0 || c.UpBlockTypes.Count != c.DownBlockTypes.Count || c.BlockOutChannels.Count != c.DownBlockTypes.Count)
            throw new InvalidDataException($"UNet2DConditionModel: down_block_types ({c.DownBlockTypes.Count}), up_block_types ({c.UpBlockTypes.Count}) and block_out_channels ({c.BlockOutChannels.Count}) must have the same non-zero length.");
    }

    /// <summary>Standard call: ε̂ (or v̂) for <paramref name="sample"/> [B, C, H, W], <paramref name="timestep"/> ([B] or scalar) and text tokens [B, L, D].</summary>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates) => Forward(sample, timestep, encoderHiddenStates);

    /// <summary>
    /// Predicts the model output for noisy latents.
    /// </summary>
    /// <param name="sample">Noisy latents [B, C, H, W] in the model's dtype.</param>
    /// <param name="timestep">Timesteps [B] or a scalar (any numeric dtype).</param>
    /// <param name="encoderHiddenStates">Text tokens [B, L, cross_attention_dim].</param>
    /// <param name="addedTimeEmbedding">Optional [B, <see cref="TimeEmbeddingDim"/>] embedding added to the time embedding before any resnet (e.g. MVDream's camera embedding).</param>
    /// <param name="numFrames">Views per sample: &gt; 1 runs every self-attention jointly over the views of a sample (views contiguous in the batch).</param>
    /// <returns>[B, out_channels, H, W].</returns>
    public Tensor Forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, Tensor? addedTimeEmbedding = null, int numFrames = 1)
    {
        ArgumentNullException.ThrowIfNull(sample);
        ArgumentNullException.ThrowIfNull(timestep);
        ArgumentNullException.ThrowIfNull(encoderHiddenStates);
        if (sample.dim() != 4 || sample.shape[1] != Config.InChannels)
            throw new ArgumentException($"UNet2DConditionModel: sample must be [B, {Config.InChannels}, H, W], got [{string.Join(", ", sample.shape)}].", nameof(sample));
        long batch = sample.shape[0];
        if (encoderHiddenStates.dim() != 3 || encoderHiddenStates.shape[0] != batch)
            throw new ArgumentException($"UNet2DConditionModel: encoder_hidden_states must be [{batch}, L, D], got [{string.Join(", ", encoderHiddenStates.shape)}].", nameof(encoderHiddenStates));
        if (numFrames < 1 || batch % numFrames != 0)
            throw new ArgumentException($"UNet2DConditionModel: batch {batch} is not a multiple of numFrames {numFrames}.", nameof(numFrames));

        using var scope = NewDisposeScope();
        long factor = 1L << NumUpsamplers;
        bool forwardUpsampleSize = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0;
        var x = Config.CenterInputSample ? sample * 2.0 - 1.0 : sample;

        var t = timestep.to(sample.device);
        if (t.dim() == 0 || t.numel() == 1) t = t.reshape(1).expand(batch);
        else if (t.dim() != 1 || t.shape[0] != batch)
            throw new ArgumentException($"UNet2DConditionModel: timestep must be a scalar or [{batch}], got [{string.Join(", ", timestep.shape)}].", nameof(timestep));
        var tEmb = time_proj.call(t).to(x.dtype);
        Trace?.Invoke("time_proj", tEmb);
        var emb = time_embedding.call(tEmb);
        Trace?.Invoke("time_embedding", emb);
        if (addedTimeEmbedding is not null)
        {
            if (addedTimeEmbedding.dim() != 2 || addedTimeEmbedding.shape[1] != TimeEmbeddingDim)
                throw new ArgumentException($"UNet2DConditionModel: the added time embedding must be [B, {TimeEmbeddingDim}], got [{string.Join(", ", addedTimeEmbedding.shape)}].", nameof(addedTimeEmbedding));
            emb = emb + addedTimeEmbedding.to(emb.dtype);
        }

        var h = conv_in.call(x);
        var skips = new List<Tensor> { h };
        for (int i = 0; i < down_blocks.Count; i++)
        {
            h = down_blocks[i].Forward(h, emb, encoderHiddenStates, numFrames, skips);
            Trace?.Invoke($"down_blocks.{i}", h);
        }
        if (mid_block is not null)
        {
            h = mid_block.Forward(h, emb, encoderHiddenStates, numFrames);
            Trace?.Invoke("mid_block", h);
        }
        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            int k = block.SkipCount;
            var blockSkips = skips.GetRange(skips.Count - k, k);
            skips.RemoveRange(skips.Count - k, k);
            long[]? upsampleSize = forwardUpsampleSize && i != up_blocks.Count - 1 ? skips[^1].shape[2..] : null;
            h = block.Forward(h, blockSkips, emb, encoderHiddenStates, upsampleSize, numFrames);
            Trace?.Invoke($"up_blocks.{i}", h);
        }
        h = conv_out.call(_act(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads a diffusers UNet folder (<c>config.json</c> + <c>diffusion_pytorch_model.safetensors</c>, sharded
    /// safetensors with an index, or <c>.bin</c>). <paramref name="directory"/> may be the model root (with <c>unet/</c>) or the UNet folder itself.
    /// </summary>
    /// <param name="directory">Model root or UNet folder.</param>
    /// <param name="dtype">Target dtype (default float32); any stored precision is converted.</param>
    /// <param name="device">Target device (default CPU).</param>
    /// <param name="variant">Weight file variant such as "fp16" (diffusion_pytorch_model.fp16.safetensors), or null.</param>
    /// <returns>The model in eval mode.</returns>
    /// <exception cref="FileNotFoundException">No config or weight file (the message lists the paths looked for).</exception>
    /// <exception cref="CheckpointException">Missing, unexpected or wrongly shaped weights, or a corrupt file.</exception>
    public static UNet2DConditionModel FromPretrained(string directory, ScalarType? dtype = null, Device? device = null, string? variant = null)
    {
        string folder = PretrainedFolder.Resolve(directory, "unet");
        var config = UNet2DConditionConfig.FromFile(Path.Combine(folder, "config.json"));
        return CheckpointLoader.LoadPretrained(() => new UNet2DConditionModel(config), folder, dtype, device, variant);
    }
}
