namespace ScoreDistillation.Diffusion.Loading;

/// <summary>
/// A checkpoint does not fit the model or cannot be read: missing, unexpected or wrongly shaped weights, a truncated
/// or corrupt file, or an unsupported dtype. The message names the file, keys and shapes.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckpointException(string message) : base(message) { }

    /// <summary>Creates the exception with an inner exception.</summary>
    public CheckpointException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates a key/shape mismatch exception.</summary>
    public CheckpointException(string message, string? path, IReadOnlyList<string> missingKeys, IReadOnlyList<string> unexpectedKeys, IReadOnlyList<string> shapeMismatches)
        : base(message)
    {
        Path = path;
        MissingKeys = missingKeys;
        UnexpectedKeys = unexpectedKeys;
        ShapeMismatches = shapeMismatches;
    }

    /// <summary>Creates the exception.</summary>
    public CheckpointException() { }

    /// <summary>The checkpoint file (or index) concerned, when known.</summary>
    public string? Path { get; }

    /// <summary>Model weights the checkpoint lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; } = Array.Empty<string>();

    /// <summary>Checkpoint weights the model does not have.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; } = Array.Empty<string>();

    /// <summary>"key: expected [..], found [..]" for every weight whose shape differs.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; } = Array.Empty<string>();
}
