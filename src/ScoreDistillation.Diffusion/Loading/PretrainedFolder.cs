namespace ScoreDistillation.Diffusion.Loading;

/// <summary>Locates the component folders of a diffusers model directory.</summary>
internal static class PretrainedFolder
{
    /// <summary>The folder holding <c>config.json</c>: <paramref name="directory"/>/<paramref name="subfolder"/> or <paramref name="directory"/> itself.</summary>
    public static string Resolve(string directory, string subfolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Model directory not found: {directory}");
        string sub = Path.Combine(directory, subfolder);
        if (File.Exists(Path.Combine(sub, "config.json"))) return sub;
        if (File.Exists(Path.Combine(directory, "config.json"))) return directory;
        string looked = Path.Combine(sub, "config.json");
        throw new FileNotFoundException($"No config.json found: looked for '{looked}' and '{Path.Combine(directory, "config.json")}'.", looked);
    }
}
