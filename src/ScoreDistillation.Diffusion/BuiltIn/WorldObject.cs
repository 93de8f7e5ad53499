using System.Globalization;
using System.Text.RegularExpressions;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// One object of the procedural world: an analytic shape with an albedo colour and, optionally, a differently
/// coloured side (the family that looks different from the front and the back).
/// </summary>
/// <param name="Shape">The analytic shape.</param>
/// <param name="Colour">Body colour name (see <see cref="WorldVocabulary.Colours"/>).</param>
/// <param name="AccentColour">Colour of the accent side, or null for a single-coloured object.</param>
/// <param name="Side">Which side carries <paramref name="AccentColour"/> (ignored when it is null).</param>
/// <param name="Size">Half-extent of the shape's largest dimension in world units.</param>
public sealed partial record WorldObject(WorldShape Shape, string Colour, string? AccentColour = null, AccentSide Side = AccentSide.Front, double Size = WorldObject.DefaultSize)
{
    /// <summary>Default half-extent: fills most of a 40°–70° view from distance 1.0–1.5 (ScaleDreamer's training cameras).</summary>
    public const double DefaultSize = 0.3;

    /// <summary>True when part of the object has a different colour.</summary>
    public bool IsTwoTone => AccentColour is not null && !string.Equals(AccentColour, Colour, StringComparison.Ordinal);

    /// <summary>The canonical prompt, e.g. "a red cube" or "an orange cone with a blue front".</summary>
    public string Prompt
    {
        get
        {
            string shape = Shape.ToString().ToLowerInvariant();
            string basic = $"{WorldVocabulary.Article(Colour)} {Colour} {shape}";
            if (AccentColour is null) return basic;
            return $"{basic} with {WorldVocabulary.Article(AccentColour)} {AccentColour} {Side.ToString().ToLowerInvariant()}";
        }
    }

    /// <summary>The same object with another half-extent.</summary>
    public WorldObject WithSize(double size) => this with { Size = size };

    /// <summary>
    /// Parses a prompt such as "a red cube", "The  Orange  CONE" or "a red cube with a blue front, side view".
    /// Articles, case, extra spaces and a trailing view-dependent suffix (", front view") are tolerated.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown word or a malformed prompt; the message lists the vocabulary.</exception>
    public static WorldObject Parse(string prompt, double size = DefaultSize)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (!(size > 0)) throw new ArgumentOutOfRangeException(nameof(size), size, "Object size must be positive.");
        var words = Words(prompt);
        if (words.Count == 0)
            throw new ArgumentException($"The empty prompt names no object (it is the unconditional prompt). {WorldVocabulary.Describe()}", nameof(prompt));
        foreach (var w in words)
        {
            bool known = WorldVocabulary.Articles.Contains(w) || WorldVocabulary.Colours.Contains(w) || WorldVocabulary.Shapes.Contains(w)
                || WorldVocabulary.Sides.Contains(w) || w == "with";
            if (!known)
                throw new ArgumentException($"Unknown word '{w}' in prompt \"{prompt}\". {WorldVocabulary.Describe()}", nameof(prompt));
        }

        var content = words.Where(w => !WorldVocabulary.Articles.Contains(w)).ToList();
        bool plain = content.Count == 2;
        bool twoTone = content.Count == 5 && content[2] == "with";
        if (!(plain || twoTone)
            || !WorldVocabulary.Colours.Contains(content[0]) || !WorldVocabulary.Shapes.Contains(content[1])
            || (twoTone && (!WorldVocabulary.Colours.Contains(content[3]) || !WorldVocabulary.Sides.Contains(content[4]))))
            throw new ArgumentException($"Prompt \"{prompt}\" does not follow the grammar of the built-in world. {WorldVocabulary.Describe()}", nameof(prompt));

        var shape = Enum.Parse<WorldShape>(content[1], ignoreCase: true);
        if (plain) return new WorldObject(shape, content[0], null, AccentSide.Front, size);
        return new WorldObject(shape, content[0], content[3], Enum.Parse<AccentSide>(content[4], ignoreCase: true), size);
    }

    /// <summary>Like <see cref="Parse"/> but returns false instead of throwing.</summary>
    public static bool TryParse(string prompt, out WorldObject? result, double size = DefaultSize)
    {
        try
        {
            result = Parse(prompt, size);
            return true;
        }
        catch (ArgumentException)
        {
            result = null;
            return false;
        }
    }

    /// <summary>Lower-case words of a prompt with punctuation and a trailing view suffix removed.</summary>
    internal static List<string> Words(string prompt)
    {
        string p = prompt.Trim().ToLowerInvariant();
        p = ViewSuffix().Replace(p, "");
        p = p.Replace(',', ' ').Replace('.', ' ');
        return p.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Prompt} (size {Size:G4})");

    [GeneratedRegex(@",?\s*(front|side|back|overhead)\s+view\s*$")]
    private static partial Regex ViewSuffix();
}
