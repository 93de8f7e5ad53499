using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// The reference views of the built-in world, keyed by canonical prompt, plus the unconditional set. Either rendered on
/// demand from the procedural world (<see cref="ReferenceLibrary(ReferenceLibraryOptions)"/>) and cached in memory and
/// optionally on disk, or given explicitly (<see cref="FromViews"/>, for tests and custom worlds). Thread-safe.
/// </summary>
public sealed partial class ReferenceLibrary : IDisposable
{
    readonly Dictionary<string, ReferenceViews> _sets = new(StringComparer.Ordinal);
    readonly object _gate = new();
    readonly ReferenceRenderer? _renderer;
    ReferenceViews? _unconditional;
    bool _disposed;

    ReferenceLibrary(int imageSize, string id, ReferenceRenderer? renderer)
    {
        ImageSize = imageSize;
        Id = id;
        _renderer = renderer;
    }

    /// <summary>Creates a library that renders each object of the procedural world the first time its prompt is used.</summary>
    public ReferenceLibrary(ReferenceLibraryOptions? options = null)
        : this(0, "", null)
    {
        options ??= new ReferenceLibraryOptions();
        options.Validate();
        Options = options;
        _renderer = new ReferenceRenderer(options);
        ImageSize = options.ImageSize;
        Id = _renderer.SettingsId;
    }

    /// <summary>
    /// A library over explicit reference sets (taking ownership of them). Prompts are canonicalised when they parse as
    /// world prompts and used verbatim otherwise. The unconditional set defaults to the concatenation of all sets.
    /// </summary>
    public static ReferenceLibrary FromViews(IEnumerable<KeyValuePair<string, ReferenceViews>> sets, ReferenceViews? unconditional = null)
    {
        ArgumentNullException.ThrowIfNull(sets);
        var list = sets.ToList();
        if (list.Count == 0 && unconditional is null) throw new ArgumentException("A library needs at least one reference set.", nameof(sets));
        int size = list.Count > 0 ? list[0].Value.ImageSize : unconditional!.ImageSize;
        foreach (var (prompt, views) in list)
            if (views.ImageSize != size) throw new ArgumentException($"Reference set '{prompt}' is {views.ImageSize}² but the library is {size}².", nameof(sets));
        if (unconditional is not null && unconditional.ImageSize != size)
            throw new ArgumentException($"The unconditional set is {unconditional.ImageSize}² but the library is {size}².", nameof(unconditional));
        var lib = new ReferenceLibrary(size, string.Create(CultureInfo.InvariantCulture, $"explicit({list.Count} sets,{size}px)"), null);
        foreach (var (prompt, views) in list) lib._sets[Key(prompt)] = views;
        lib._unconditional = unconditional ?? ReferenceViews.Concat(list.Select(p => p.Value).ToList());
        return lib;
    }

    /// <summary>Rendering options, or null for an explicit library.</summary>
    public ReferenceLibraryOptions? Options { get; }

    /// <summary>Image side S of every reference.</summary>
    public int ImageSize { get; }

    /// <summary>A stable identifier of the settings (the disk-cache key for rendered libraries).</summary>
    public string Id { get; }

    /// <summary>The prompts whose references are currently held.</summary>
    public IReadOnlyList<string> CachedPrompts
    {
        get { lock (_gate) return _sets.Keys.ToArray(); }
    }

    /// <summary>The references of one prompt (rendered on first use for a rendered library). Do not dispose the result.</summary>
    /// <exception cref="ArgumentException">Unknown words, or a prompt an explicit library does not hold.</exception>
    public ReferenceViews ForPrompt(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        string key = Key(prompt);
        if (key.Length == 0) return Unconditional;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_sets.TryGetValue(key, out var v)) return v;
            if (_renderer is null)
                throw new ArgumentException($"This explicit reference library has no views for \"{prompt}\". Known prompts: {string.Join("; ", _sets.Keys)}.", nameof(prompt));
            v = _renderer.Views(WorldObject.Parse(key, Options!.ObjectSize), Options.ViewsPerPrompt);
            _sets[key] = v;
            return v;
        }
    }

    /// <summary>Ensures the references of <paramref name="prompts"/> are ready (rendering all missing ones in one batch).</summary>
    public void Prefetch(IEnumerable<string> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var missing = prompts.Select(Key).Where(k => k.Length > 0).Distinct().Where(k => !_sets.ContainsKey(k)).ToList();
            if (missing.Count == 0) return;
            if (_renderer is null)
                throw new ArgumentException($"This explicit reference library has no views for \"{missing[0]}\". Known prompts: {string.Join("; ", _sets.Keys)}.", nameof(prompts));
            var views = _renderer.Views(missing.Select(k => WorldObject.Parse(k, Options!.ObjectSize)).ToList(), Options!.ViewsPerPrompt);
            for (int i = 0; i < missing.Count; i++) _sets[missing[i]] = views[i];
        }
    }

    /// <summary>
    /// The unconditional reference set: the first <see cref="ReferenceLibraryOptions.UnconditionalViewsPerPrompt"/> views of
    /// every prompt of <see cref="ReferenceLibraryOptions.UnconditionalPrompts"/> (rendered on first use). Do not dispose it.
    /// </summary>
    public ReferenceViews Unconditional
    {
        get
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_unconditional is not null) return _unconditional;
                var options = Options!;
                var objects = options.ResolvedUnconditionalPrompts().Select(p => WorldObject.Parse(p, options.ObjectSize)).ToList();
                var parts = _renderer!.Views(objects, options.UnconditionalViewsPerPrompt);
                _unconditional = ReferenceViews.Concat(parts);
                foreach (var p in parts) p.Dispose();
                return _unconditional;
            }
        }
    }

    /// <summary>
    /// Renders the object of <paramref name="prompt"/> from arbitrary cameras (camera-to-world [n, 4, 4], vertical field of
    /// view <paramref name="fovYDeg"/>): [n, 3, S, S] in [0, 1], with the same renderer settings as the references. Only
    /// a rendered library can do this.
    /// </summary>
    /// <exception cref="InvalidOperationException">An explicit library (no procedural world to render).</exception>
    /// <exception cref="ArgumentException">The prompt is "" or has unknown words, or the cameras are not [n, 4, 4].</exception>
    public Tensor RenderAt(string prompt, Tensor cameraToWorld, double fovYDeg)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(cameraToWorld);
        if (_renderer is null) throw new InvalidOperationException("An explicit reference library cannot render new views; posed references need a rendered library.");
        if (cameraToWorld.dim() != 3 || cameraToWorld.shape[1] != 4 || cameraToWorld.shape[2] != 4 || cameraToWorld.shape[0] == 0)
            throw new ArgumentException($"Cameras must be camera-to-world [n, 4, 4], got [{string.Join(", ", cameraToWorld.shape)}].", nameof(cameraToWorld));
        if (!(fovYDeg > 0 && fovYDeg < 180)) throw new ArgumentOutOfRangeException(nameof(fovYDeg), fovYDeg, "The field of view must be in (0°, 180°).");
        string key = Key(prompt);
        if (key.Length == 0) throw new ArgumentException("The unconditional prompt has no object to render.", nameof(prompt));
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _renderer.RenderPosed(WorldObject.Parse(key, Options!.ObjectSize), cameraToWorld, fovYDeg);
    }

    /// <summary>The canonical key of a prompt ("" for the unconditional prompt).</summary>
    static string Key(string prompt)
    {
        if (WorldObject.Words(prompt).Count == 0) return "";
        return WorldObject.TryParse(prompt, out var o) ? o!.Prompt : prompt.Trim();
    }

    /// <summary>Disposes every held reference set.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            var all = new HashSet<ReferenceViews>(_sets.Values);
            if (_unconditional is not null) all.Add(_unconditional);
            foreach (var v in all) v.Dispose();
            _sets.Clear();
        }
    }
}
