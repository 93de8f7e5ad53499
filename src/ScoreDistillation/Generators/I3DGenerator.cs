using ScoreDistillation.Priors;
using ScoreDistillation.Rendering;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ScoreDistillation.Generators;

/// <summary>
/// Text (plus optional noise) → a 3D field per prompt. Prompt-specific generators ignore the text; amortized ones
/// (Hyper-iNGP, 3DConv-Net, Triplane-Transformer) map the text embedding to a field.
/// </summary>
public interface I3DGenerator : IDisposable
{
    /// <summary>The trainable module (its state_dict is what checkpoints store).</summary>
    nn.Module Module { get; }

    /// <summary>Named parameter groups for per-group learning rates, e.g. "generator" and "background".</summary>
    IReadOnlyDictionary<string, IReadOnlyList<Parameter>> ParameterGroups { get; }

    /// <summary>Background owned by the generator (e.g. Hyper-iNGP's text-conditioned hash grid), or null.</summary>
    IBackground? Background { get; }

    /// <summary>Produces the fields of a batch of prompts.</summary>
    /// <param name="text">Conditioning of the B prompts.</param>
    /// <param name="noise">Optional latent noise [B, Z] for generators that take it.</param>
    IRadianceField Generate(TextConditioning text, Tensor? noise = null);
}
