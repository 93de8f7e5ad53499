using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace ScoreDistillation.Diffusion.Clip;

/// <summary>
/// The part of ftfy 6.1.1's <c>fix_text</c> that changes CLIP token ids: HTML entities (only when the text has no
/// <c>&lt;</c>), UTF-8 read as Windows-1252 ("mojibake"), Latin ligatures, fullwidth characters, curly quotes, line
/// breaks, control characters, then NFC. Like ftfy it repeats until the text stops changing.
/// </summary>
internal static partial class ClipTextCleaner
{
    // Windows-1252's 0x80..0x9F characters; ftfy's "sloppy" variant maps the five undefined bytes to the C1 controls.
    const string Cp1252High = "\u20AC\u0081\u201A\u0192\u201E\u2026\u2020\u2021\u02C6\u2030\u0160\u2039\u0152\u008D\u017D\u008F" +
                              "\u0090\u2018\u2019\u201C\u201D\u2022\u2013\u2014\u02DC\u2122\u0161\u203A\u0153\u009D\u017E\u0178";

    /// <summary>ftfy-style clean-up as the CLIP tokenizers apply before lower-casing.</summary>
    public static string FixText(string text)
    {
        bool unescape = !text.Contains('<', StringComparison.Ordinal);
        for (int guard = 0; guard < 16; guard++)
        {
            string before = text;
            if (unescape) text = UnescapeHtml(text);
            text = FixMojibake(text);
            text = FixC1Controls(text);
            text = FixLigatures(text);
            text = FixWidth(text);
            text = UncurlQuotes(text);
            text = FixLineBreaks(text);
            text = RemoveControlChars(text);
            text = text.Normalize(NormalizationForm.FormC);
            if (text == before) break;
        }
        return text;
    }

    /// <summary>Python's <c>html.unescape</c> (one pass).</summary>
    public static string HtmlUnescape(string text) => text.Contains('&', StringComparison.Ordinal) ? WebUtility.HtmlDecode(text) : text;

    static string UnescapeHtml(string text) => text.Contains('&', StringComparison.Ordinal)
        ? HtmlEntity().Replace(text, m =>
        {
            string decoded = WebUtility.HtmlDecode(m.Value);
            if (decoded == m.Value && m.Value.Any(char.IsUpper)) decoded = WebUtility.HtmlDecode(m.Value.ToLowerInvariant());
            return decoded;
        })
        : text;

    // A run of characters Windows-1252 can encode, containing a UTF-8 lead byte, is re-decoded as UTF-8 if that succeeds.
    static string FixMojibake(string text)
    {
        if (!text.Any(c => c >= 0xC2 && c <= 0xF4)) return text;
        return MojibakeRun().Replace(text, m =>
        {
            var bytes = new byte[m.Value.Length];
            for (int i = 0; i < bytes.Length; i++)
            {
                char c = m.Value[i];
                int hi = Cp1252High.IndexOf(c, StringComparison.Ordinal);
                if (hi >= 0) bytes[i] = (byte)(0x80 + hi);
                else if (c < 0x100) bytes[i] = (byte)c;
                else return m.Value;
            }
            try
            {
                string s = new UTF8Encoding(false, true).GetString(bytes);
                return s.Length < m.Value.Length ? s : m.Value;
            }
            catch (DecoderFallbackException) { return m.Value; }
        });
    }

    // C1 controls left after the mojibake fix are read as the Windows-1252 characters they most likely were.
    static string FixC1Controls(string text)
    {
        if (!text.Any(c => c >= '\u0080' && c <= '\u009F')) return text;
        var chars = text.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
            if (chars[i] >= '\u0080' && chars[i] <= '\u009F') chars[i] = Cp1252High[chars[i] - 0x80];
        return new string(chars);
    }

    static string FixLigatures(string text)
    {
        if (!text.Any(c => c is >= '\uFB00' and <= '\uFB06' or '\u0132' or '\u0133' or '\u0149' or >= '\u01C4' and <= '\u01CC' or >= '\u01F1' and <= '\u01F3')) return text;
        var sb = new StringBuilder(text.Length + 4);
        foreach (char c in text)
        {
            sb.Append(c switch
            {
                '\uFB00' => "ff", '\uFB01' => "fi", '\uFB02' => "fl", '\uFB03' => "ffi", '\uFB04' => "ffl", '\uFB05' => "ſt", '\uFB06' => "st",
                '\u0132' => "IJ", '\u0133' => "ij", '\u0149' => "ʼn",
                '\u01C4' => "DŽ", '\u01C5' => "Dž", '\u01C6' => "dž", '\u01C7' => "LJ", '\u01C8' => "Lj", '\u01C9' => "lj",
                '\u01CA' => "NJ", '\u01CB' => "Nj", '\u01CC' => "nj", '\u01F1' => "DZ", '\u01F2' => "Dz", '\u01F3' => "dz",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }

    // ftfy's width map: U+3000 becomes a space, U+FF01..U+FFEF become their one-character NFKC form.
    static string FixWidth(string text)
    {
        if (!text.Any(c => c == '\u3000' || (c >= '\uFF01' && c <= '\uFFEF'))) return text;
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            if (c == '\u3000') sb.Append(' ');
            else if (c >= '\uFF01' && c <= '\uFFEF')
            {
                string n = c.ToString().Normalize(NormalizationForm.FormKC);
                sb.Append(n.Length == 1 ? n : c.ToString());
            }
            else sb.Append(c);
        }
        return sb.ToString();
    }

    static string UncurlQuotes(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
            sb.Append(c switch { '\u02BC' or (>= '\u2018' and <= '\u201B') => '\'', >= '\u201C' and <= '\u201F' => '"', _ => c });
        return sb.ToString();
    }

    static string FixLineBreaks(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal)
        .Replace('\r', '\n').Replace('\u2028', '\n').Replace('\u2029', '\n').Replace('\u0085', '\n');

    static string RemoveControlChars(string text)
    {
        if (!text.Any(IsRemovable)) return text;
        var sb = new StringBuilder(text.Length);
        foreach (char c in text) if (!IsRemovable(c)) sb.Append(c);
        return sb.ToString();
    }

    // ftfy's CONTROL_CHARS: C0 controls except \t \n \f \r, DEL, deprecated format characters, BOM, annotation characters.
    static bool IsRemovable(char c) =>
        (c < 0x20 && c != '\t' && c != '\n' && c != '\f' && c != '\r') || c == '\u007F' ||
        c == '\uFEFF' || (c >= '\uFFF9' && c <= '\uFFFC') || (c >= '\u206A' && c <= '\u206F');

    [GeneratedRegex(@"&#?[0-9A-Za-z]{1,24};")]
    private static partial Regex HtmlEntity();

    // Latin-1 / Windows-1252 letters and symbols, at least one of them a UTF-8 lead byte followed by continuation-range characters.
    [GeneratedRegex(@"[\u00C2-\u00F4][\u0080-\u00BF\u0152\u0153\u0160\u0161\u0178\u017D\u017E\u0192\u02C6\u02DC\u2013\u2014\u2018-\u201A\u201C-\u201E\u2020-\u2022\u2026\u2030\u2039\u203A\u20AC\u2122]+")]
    private static partial Regex MojibakeRun();
}
