using System.Collections;
using ScoreDistillation.Diffusion.Loading;
using ScoreDistillation.Diffusion.Vae;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.MVDream;

/// <summary>
/// Reads MVDream's published checkpoints (<c>sd-v2.1-base-4view.pt</c>, <c>sd-v1.5-4view.pt</c>): a zip-format
/// <c>torch.save</c> of the whole LDM <c>LatentDiffusionInterface.state_dict()</c>, or a safetensors copy of it. The UNet
/// (<c>model.diffusion_model.*</c>) and the VAE (<c>first_stage_model.*</c>) are loaded into our modules through
/// <see cref="LdmKeyMap"/>; the OpenCLIP text tower (<c>cond_stage_model.*</c>) and schedule buffers are not used (text comes
/// from the SD 2.1-base CLIP text encoder, as the reference pipeline does). No Python or conversion step is needed.
/// </summary>
public static class MVDreamCheckpoint
{
    /// <summary>Reads all tensors of the checkpoint to CPU tensors (a <c>{"state_dict": …}</c> wrapper is unwrapped). The caller disposes them.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointException">The file is not a readable checkpoint.</exception>
    public static Dictionary<string, Tensor> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"MVDream checkpoint not found: {path}", path);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            return CheckpointLoader.ReadStateDict(path);
        Hashtable table;
        try
        {
            table = PyTorchUnpickler.UnpickleStateDict(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CheckpointException($"MVDream checkpoint '{path}' could not be read as a zip-format torch.save file ({e.GetType().Name}: {e.Message}).", e);
        }
        if (table["state_dict"] is Hashtable inner) table = inner;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in table)
            if (e.Key is string k && e.Value is Tensor t) result[k] = t.DetachFromDisposeScope();
        return result;
    }

    /// <summary>Builds the UNet of the checkpoint's configuration and loads its <c>model.diffusion_model.*</c> weights.</summary>
    public static MultiViewUNet LoadUNet(IReadOnlyDictionary<string, Tensor> stateDict, MultiViewUNetConfig config, string source, int numFrames = 4)
    {
        var unet = new MultiViewUNet(config, numFrames);
        try
        {
            LoadMapped(unet, LdmKeyMap.ForMultiViewUNet(unet), stateDict, LdmKeyMap.UNetPrefix, source);
            unet.eval();
            return unet;
        }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    /// <summary>Builds the VAE and loads its <c>first_stage_model.*</c> weights (1×1-conv attention squeezed to Linear).</summary>
    public static AutoencoderKL LoadVae(IReadOnlyDictionary<string, Tensor> stateDict, AutoencoderKLConfig config, string source)
    {
        var vae = new AutoencoderKL(config);
        try
        {
            LoadMapped(vae, LdmKeyMap.ForAutoencoder(vae), stateDict, LdmKeyMap.VaePrefix, source);
            vae.eval();
            return vae;
        }
        catch
        {
            vae.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies the mapped tensors into <paramref name="module"/>, strictly: every module key must be found with the right shape, and
    /// every checkpoint key under <paramref name="prefix"/> must be used. Errors name the keys and shapes.
    /// </summary>
    public static void LoadMapped(nn.Module module, IReadOnlyList<LdmKeyMapping> map, IReadOnlyDictionary<string, Tensor> stateDict, string prefix, string source)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(stateDict);
        var target = module.state_dict();
        var missing = new List<string>();
        var wrong = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in map)
        {
            if (!stateDict.TryGetValue(m.CheckpointKey, out var src)) { missing.Add(m.CheckpointKey); continue; }
            used.Add(m.CheckpointKey);
            var want = target[m.ModelKey].shape;
            var have = m.SqueezeConv1x1 && src.dim() == 4 && src.shape[2] == 1 && src.shape[3] == 1 ? src.shape[..2] : src.shape;
            if (!want.SequenceEqual(have))
                wrong.Add($"{m.CheckpointKey} → {m.ModelKey}: expected [{string.Join(", ", want)}], found [{string.Join(", ", src.shape)}]");
        }
        var unexpected = stateDict.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (missing.Count > 0 || wrong.Count > 0 || unexpected.Count > 0)
        {
            static string List(string title, List<string> items) =>
                items.Count == 0 ? "" : $"\n  {title} ({items.Count}): {string.Join(", ", items.Take(20))}{(items.Count > 20 ? ", …" : "")}";
            throw new CheckpointException($"MVDream checkpoint '{source}' does not match the {module.GetName()} configuration." +
                List("wrongly shaped", wrong) + List("missing keys", missing) + List("unexpected keys", unexpected), source, missing, unexpected, wrong);
        }
        using var _ = no_grad();
        foreach (var m in map)
        {
            using var scope = NewDisposeScope();
            var src = stateDict[m.CheckpointKey];
            if (m.SqueezeConv1x1 && src.dim() == 4) src = src.flatten(1);
            var dst = target[m.ModelKey];
            dst.copy_(src.to(dst.dtype, dst.device));
        }
    }
}
