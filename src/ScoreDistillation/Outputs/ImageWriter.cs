using ScoreDistillation.Training;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Outputs;

/// <summary>PNG output of rendered images (SkiaSharp): single frames, turntable sequences and contact sheets.</summary>
public static class ImageWriter
{
    /// <summary>Converts an image [3, H, W] (or [1, 3, H, W]) in [0, 1] to an RGBA bitmap.</summary>
    public static SKBitmap ToBitmap(Tensor image)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var scope = NewDisposeScope();
        var img = image.dim() == 4 && image.shape[0] == 1 ? image[0] : image;
        if (img.dim() != 3 || img.shape[0] != 3)
            throw new ArgumentException($"Expected an RGB image [3, H, W], got [{string.Join(", ", image.shape)}].", nameof(image));
        int h = (int)img.shape[1], w = (int)img.shape[2];
        var hwc = img.detach().to(ScalarType.Float32, CPU).clamp(0, 1).mul(255).round().to(ScalarType.Byte).permute(1, 2, 0).contiguous();
        var rgb = hwc.data<byte>().ToArray();
        var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var px = new byte[w * h * 4];
        for (int i = 0, j = 0; i < w * h; i++, j += 3)
        {
            px[4 * i] = rgb[j]; px[4 * i + 1] = rgb[j + 1]; px[4 * i + 2] = rgb[j + 2]; px[4 * i + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(px, 0, bmp.GetPixels(), px.Length);
        return bmp;
    }

    /// <summary>Writes one image [3, H, W] in [0, 1] as PNG (atomically).</summary>
    public static void SavePng(Tensor image, string path)
    {
        using var bmp = ToBitmap(image);
        Save(bmp, path);
    }

    /// <summary>Writes a bitmap as PNG (atomically).</summary>
    public static void Save(SKBitmap bitmap, string path)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException($"PNG encoding failed for '{path}'.");
        AtomicFile.WriteAllBytes(path, data.AsSpan());
    }

    /// <summary>
    /// Writes frames [N, 3, H, W] as <c>frame_000.png</c>… into <paramref name="directory"/> and one contact sheet
    /// (<paramref name="sheetPath"/>) with <paramref name="columns"/> columns. Returns the frame paths.
    /// </summary>
    public static IReadOnlyList<string> SaveTurntable(Tensor frames, string directory, string sheetPath, int columns = 6)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (frames.dim() != 4 || frames.shape[1] != 3) throw new ArgumentException($"Expected frames [N, 3, H, W], got [{string.Join(", ", frames.shape)}].", nameof(frames));
        Directory.CreateDirectory(directory);
        int n = (int)frames.shape[0];
        var paths = new List<string>();
        for (int i = 0; i < n; i++)
        {
            var p = Path.Combine(directory, $"frame_{i:D3}.png");
            using var f = frames[i];
            SavePng(f, p);
            paths.Add(p);
        }
        SaveContactSheet(frames, sheetPath, columns);
        return paths;
    }

    /// <summary>Writes images [N, 3, H, W] as one grid image with <paramref name="columns"/> columns.</summary>
    public static void SaveContactSheet(Tensor frames, string path, int columns = 6)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (columns < 1) throw new ArgumentOutOfRangeException(nameof(columns));
        int n = (int)frames.shape[0], h = (int)frames.shape[2], w = (int)frames.shape[3];
        int cols = Math.Min(columns, n), rows = (n + cols - 1) / cols;
        using var sheet = new SKBitmap(new SKImageInfo(cols * w, rows * h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(sheet))
        {
            canvas.Clear(SKColors.White);
            for (int i = 0; i < n; i++)
            {
                using var f = frames[i];
                using var bmp = ToBitmap(f);
                canvas.DrawBitmap(bmp, i % cols * w, i / cols * h);
            }
        }
        Save(sheet, path);
    }
}
