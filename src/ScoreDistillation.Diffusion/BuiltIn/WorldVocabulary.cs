using System.Text;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>The analytic shapes of the procedural world. Every shape is centred on the origin, +z up.</summary>
public enum WorldShape
{
    /// <summary>A ball.</summary>
    Sphere,
    /// <summary>An axis-aligned cube.</summary>
    Cube,
    /// <summary>An upright cylinder (axis +z).</summary>
    Cylinder,
    /// <summary>An upright cone, apex up.</summary>
    Cone,
    /// <summary>A torus lying in the xy-plane.</summary>
    Torus,
    /// <summary>A square pyramid, apex up.</summary>
    Pyramid,
    /// <summary>An upright capsule (a cylinder with hemispherical caps).</summary>
    Capsule,
    /// <summary>A regular octahedron.</summary>
    Octahedron,
    /// <summary>An upright triangular prism.</summary>
    Prism,
}

/// <summary>Which part of a two-tone object carries the accent colour.</summary>
public enum AccentSide
{
    /// <summary>The +x side, seen by cameras at azimuth ≈ 0° (the "front view" of threestudio's view-dependent prompting).</summary>
    Front,
    /// <summary>The −x side, seen by cameras at azimuth ≈ ±180°.</summary>
    Back,
    /// <summary>The +z side, seen from above.</summary>
    Top,
}

/// <summary>
/// The words of the procedural world: colours (with their albedo), shapes and the two-tone grammar
/// "a {colour} {shape} with a {colour} {front|back|top}".
/// </summary>
public static class WorldVocabulary
{
    static readonly (string Name, float R, float G, float B)[] ColourTable =
    {
        ("red", 0.85f, 0.12f, 0.12f),
        ("green", 0.15f, 0.65f, 0.20f),
        ("blue", 0.12f, 0.28f, 0.85f),
        ("yellow", 0.95f, 0.85f, 0.12f),
        ("orange", 0.95f, 0.50f, 0.08f),
        ("purple", 0.55f, 0.18f, 0.70f),
        ("cyan", 0.10f, 0.78f, 0.85f),
        ("pink", 0.95f, 0.55f, 0.72f),
        ("brown", 0.50f, 0.30f, 0.12f),
        ("black", 0.08f, 0.08f, 0.08f),
    };

    /// <summary>Articles that may precede a colour and are ignored.</summary>
    public static IReadOnlyList<string> Articles { get; } = new[] { "a", "an", "the" };

    /// <summary>Colour names, in a fixed order.</summary>
    public static IReadOnlyList<string> Colours { get; } = ColourTable.Select(c => c.Name).ToArray();

    /// <summary>Shape names (lower case), in the order of <see cref="WorldShape"/>.</summary>
    public static IReadOnlyList<string> Shapes { get; } = Enum.GetValues<WorldShape>().Select(s => s.ToString().ToLowerInvariant()).ToArray();

    /// <summary>Side names of two-tone objects (lower case), in the order of <see cref="AccentSide"/>.</summary>
    public static IReadOnlyList<string> Sides { get; } = Enum.GetValues<AccentSide>().Select(s => s.ToString().ToLowerInvariant()).ToArray();

    /// <summary>Linear RGB albedo in [0, 1] of a colour name.</summary>
    /// <exception cref="ArgumentException">The name is not a colour of the world.</exception>
    public static (float R, float G, float B) Albedo(string colour)
    {
        foreach (var c in ColourTable)
            if (string.Equals(c.Name, colour, StringComparison.OrdinalIgnoreCase)) return (c.R, c.G, c.B);
        throw new ArgumentException($"'{colour}' is not a colour of the built-in world. {Describe()}", nameof(colour));
    }

    /// <summary>The indefinite article for a word ("an orange cube", "a red cube").</summary>
    public static string Article(string word) => word.Length > 0 && "aeiou".Contains(word[0], StringComparison.Ordinal) ? "an" : "a";

    /// <summary>Every plain prompt "a {colour} {shape}" (colours × shapes, colour-major).</summary>
    public static IReadOnlyList<string> AllPlainPrompts() =>
        Colours.SelectMany(c => Shapes.Select(s => $"{Article(c)} {c} {s}")).ToArray();

    /// <summary>A human-readable description of the vocabulary and grammar, used in error messages.</summary>
    public static string Describe()
    {
        var sb = new StringBuilder();
        sb.Append("Grammar: \"[a|an|the] {colour} {shape}\" or \"[a] {colour} {shape} with [a] {colour} {side}\" ");
        sb.Append("(case and extra spaces are ignored; a trailing \", front/side/back/overhead view\" is ignored). ");
        sb.Append("Colours: ").Append(string.Join(", ", Colours)).Append(". ");
        sb.Append("Shapes: ").Append(string.Join(", ", Shapes)).Append(". ");
        sb.Append("Sides: ").Append(string.Join(", ", Sides)).Append('.');
        return sb.ToString();
    }
}
