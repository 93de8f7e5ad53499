using ScoreDistillation.Diffusion.Blocks;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Unet;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.Lora;

#pragma warning disable IDE1006 // Field names are the diffusers state_dict keys.

/// <summary>
/// Rank-r LoRA adapters on <c>to_q</c>, <c>to_k</c>, <c>to_v</c> and <c>to_out.0</c> of every attention layer of a
/// <see cref="UNet2DConditionModel"/> (diffusers' <c>LoRAAttnProcessor</c>) plus an optional camera MLP whose output is added
/// to the time embedding — ProlificDreamer's trainable ε_φ parts. The base UNet is not modified and stays frozen: the
/// adapter installs attention processors that add their low-rank terms only while <see cref="Enabled"/> is true, so a UNet
/// shared with a frozen prior computes the prior's outputs whenever the adapter is disabled.
/// </summary>
/// <remarks>
/// Parameter names (<see cref="NamedParameters"/>, and the keys of <see cref="Save"/> files) follow diffusers'
/// attention-processor state dict (<c>unet.attn_processors</c>, as written by <c>save_attn_procs</c> in diffusers 0.19):
/// <c>{attention path}.processor.{to_q|to_k|to_v|to_out}_lora.{down|up}.weight</c>, e.g.
/// <c>down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight</c>; the camera MLP uses threestudio's
/// <c>class_embedding.linear_1.weight</c>, <c>class_embedding.linear_1.bias</c>, <c>class_embedding.linear_2.weight</c>,
/// <c>class_embedding.linear_2.bias</c>.
/// </remarks>
public sealed class UNetLoraAdapter : nn.Module
{
    internal readonly ModuleList<LoraAttentionProcessor> processors;
    internal readonly TimestepEmbedding? class_embedding;

    readonly LoraState _state = new();
    readonly List<Attention> _attentions = new();
    readonly string[] _processorNames;
    readonly Dictionary<string, Parameter> _named = new(StringComparer.Ordinal);
    readonly Parameter[] _trainable;
    bool _attached;

    /// <summary>Builds adapters for every attention layer of <paramref name="unet"/> and installs them (disabled).</summary>
    /// <param name="unet">The base UNet; it keeps its weights and is not owned by the adapter.</param>
    /// <param name="options">Rank, scale, camera MLP and seed; null uses ProlificDreamer's defaults.</param>
    /// <exception cref="InvalidOperationException">An attention layer of the UNet already has a processor (another adapter is attached).</exception>
    /// <exception cref="ArgumentException">The UNet has no attention layers, or the options are invalid.</exception>
    public UNetLoraAdapter(UNet2DConditionModel unet, LoraOptions? options = null) : base(nameof(UNetLoraAdapter))
    {
        ArgumentNullException.ThrowIfNull(unet);
        Options = options ?? new LoraOptions();
        if (Options.Rank < 1) throw new ArgumentException($"LoRA rank must be ≥ 1, got {Options.Rank}.", nameof(options));
        if (Options.CameraInputDim < 1) throw new ArgumentException($"Camera input width must be ≥ 1, got {Options.CameraInputDim}.", nameof(options));
        _state.Scale = Options.Scale;

        var attentions = unet.named_modules().Where(m => m.module is Attention).Select(m => (m.name, (Attention)m.module)).ToList();
        if (attentions.Count == 0) throw new ArgumentException("The UNet has no attention layers to adapt.", nameof(unet));
        foreach (var (name, a) in attentions)
            if (a.Processor is not null)
                throw new InvalidOperationException($"Attention '{name}' already has a processor ({a.Processor.GetType().Name}); detach the other adapter first.");

        var baseWeight = unet.parameters().First();
        var device = baseWeight.device;
        bool meta = device.type == DeviceType.META;
        // Build and initialise on the CPU with a CPU generator (reproducible on any device), then move.
        var buildDevice = meta ? device : CPU;
        processors = nn.ModuleList<LoraAttentionProcessor>();
        foreach (var (_, a) in attentions) processors.Add(new LoraAttentionProcessor(a, Options.Rank, _state, buildDevice));
        if (Options.CameraEmbedding)
            class_embedding = new TimestepEmbedding(Options.CameraInputDim, unet.TimeEmbeddingDim, "silu", new LayerFactory(buildDevice, ScalarType.Float32));
        RegisterComponents();

        if (!meta)
        {
            var g = new Generator((ulong)Options.Seed);
            foreach (var p in processors) p.Initialise(g, Options.Rank);
            if (class_embedding is not null)
            {
                using var _ = no_grad();
                foreach (var (_, m) in class_embedding.named_children())
                {
                    var ps = m.parameters().ToArray();
                    double bound = 1 / Math.Sqrt(ps[0].shape[1]);
                    foreach (var p in ps) p.uniform_(-bound, bound, g);
                }
            }
            if (device.type != DeviceType.CPU) this.to(device);
        }

        _processorNames = attentions.Select(a => a.name + ".processor").ToArray();
        for (int i = 0; i < attentions.Count; i++)
            foreach (var (n, p) in processors[i].named_parameters())
                _named[$"{_processorNames[i]}.{n}"] = p;
        if (class_embedding is not null)
            foreach (var (n, p) in class_embedding.named_parameters())
                _named[$"class_embedding.{n}"] = p;
        _trainable = _named.Values.ToArray();
        foreach (var p in _trainable) p.requires_grad = true;

        foreach (var (i, (_, a)) in attentions.Select((x, i) => (i, x)))
        {
            a.Processor = processors[i];
            _attentions.Add(a);
        }
        _attached = true;
        TimeEmbeddingDim = unet.TimeEmbeddingDim;
    }

    /// <summary>The options the adapter was built with.</summary>
    public LoraOptions Options { get; }

    /// <summary>Rank r.</summary>
    public int Rank => Options.Rank;

    /// <summary>Whether the attention layers add their low-rank terms (false: the UNet computes its base outputs exactly).</summary>
    public bool Enabled
    {
        get => _state.Enabled;
        set => _state.Enabled = value;
    }

    /// <summary>The adapter scale (diffusers' <c>cross_attention_kwargs["scale"]</c>).</summary>
    public double Scale
    {
        get => _state.Scale;
        set => _state.Scale = value;
    }

    /// <summary>The diffusers processor names, one per adapted attention layer (e.g. <c>mid_block.attentions.0.transformer_blocks.0.attn2.processor</c>).</summary>
    public IReadOnlyList<string> ProcessorNames => _processorNames;

    /// <summary>True when the adapter has a camera MLP.</summary>
    public bool HasCameraEmbedding => class_embedding is not null;

    /// <summary>Width of the camera MLP output (the UNet's time-embedding width).</summary>
    public int TimeEmbeddingDim { get; }

    /// <summary>Every trainable parameter by its diffusers-style name (see the remarks of <see cref="UNetLoraAdapter"/>).</summary>
    public IReadOnlyDictionary<string, Parameter> NamedParameters => _named;

    /// <summary>LoRA and camera-MLP parameters (the only parameters that train).</summary>
    public IReadOnlyList<Parameter> TrainableParameters => _trainable;

    /// <summary>Number of LoRA parameters (without the camera MLP).</summary>
    public long LoraParameterCount => _named.Where(kv => !kv.Key.StartsWith("class_embedding.", StringComparison.Ordinal)).Sum(kv => kv.Value.numel());

    /// <summary>Number of camera-MLP parameters (0 without it).</summary>
    public long CameraParameterCount => _named.Where(kv => kv.Key.StartsWith("class_embedding.", StringComparison.Ordinal)).Sum(kv => kv.Value.numel());

    /// <summary>
    /// The camera MLP applied to <paramref name="cameras"/> [N, <see cref="LoraOptions.CameraInputDim"/>] (computed in float32):
    /// [N, <see cref="TimeEmbeddingDim"/>], to pass as the UNet's added time embedding.
    /// </summary>
    /// <exception cref="InvalidOperationException">The adapter has no camera MLP.</exception>
    public Tensor CameraEmbedding(Tensor cameras)
    {
        ArgumentNullException.ThrowIfNull(cameras);
        if (class_embedding is null) throw new InvalidOperationException("This adapter has no camera MLP (LoraOptions.CameraEmbedding was false).");
        if (cameras.dim() != 2 || cameras.shape[1] != Options.CameraInputDim)
            throw new ArgumentException($"Cameras must be [N, {Options.CameraInputDim}], got [{string.Join(", ", cameras.shape)}].", nameof(cameras));
        using var scope = NewDisposeScope();
        var dev = _trainable[0].device;
        return class_embedding.call(cameras.to(ScalarType.Float32, dev)).MoveToOuterDisposeScope();
    }

    /// <summary>Runs <paramref name="action"/> with the adapter enabled, restoring the previous state afterwards.</summary>
    public T WithEnabled<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        bool previous = _state.Enabled;
        _state.Enabled = true;
        try { return action(); }
        finally { _state.Enabled = previous; }
    }

    /// <summary>
    /// Writes the adapter weights alone (float32 safetensors, diffusers-style keys) to <paramref name="path"/>.
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var scope = NewDisposeScope();
        var dict = _named.ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(ScalarType.Float32, CPU).contiguous(), StringComparer.Ordinal);
        Safetensors.SaveStateDict(path, dict);
    }

    /// <summary>
    /// Loads adapter weights written by <see cref="Save"/> (or a diffusers attention-processor LoRA file with the same keys).
    /// All keys and shapes are checked before anything is copied.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointException">Missing, unexpected or wrongly shaped keys (the message names them), or an unreadable file.</exception>
    public void Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var stored = CheckpointLoader.ReadStateDict(path);
        try
        {
            var missing = _named.Keys.Where(k => !stored.ContainsKey(k)).ToList();
            var unexpected = stored.Keys.Where(k => !_named.ContainsKey(k)).ToList();
            var wrong = _named.Where(kv => stored.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
                .Select(kv => $"{kv.Key}: file [{string.Join(", ", stored[kv.Key].shape)}] vs adapter [{string.Join(", ", kv.Value.shape)}]").ToList();
            if (missing.Count + unexpected.Count + wrong.Count > 0)
            {
                static string List(string title, List<string> items) =>
                    items.Count == 0 ? "" : $"\n  {title} ({items.Count}): {string.Join(", ", items.Take(20))}{(items.Count > 20 ? ", …" : "")}";
                string msg = $"LoRA file '{path}' does not match this adapter (rank {Rank}, {_processorNames.Length} attention processors, camera MLP {(HasCameraEmbedding ? "on" : "off")})."
                             + List("wrongly shaped", wrong) + List("missing keys", missing) + List("unexpected keys", unexpected);
                throw new CheckpointException(msg, path, missing, unexpected, wrong);
            }
            using var _ = no_grad();
            foreach (var (k, p) in _named) p.copy_(stored[k]);
        }
        finally
        {
            foreach (var t in stored.Values) t.Dispose();
        }
    }

    /// <summary>Removes the processors from the UNet's attention layers (the UNet is then exactly the base model again).</summary>
    public void Detach()
    {
        if (!_attached) return;
        foreach (var a in _attentions)
            if (a.Processor is LoraAttentionProcessor p && processors.Contains(p)) a.Processor = null;
        _attentions.Clear();
        _attached = false;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) Detach();
        base.Dispose(disposing);
    }
}
