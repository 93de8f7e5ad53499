using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Evaluation;

/// <summary>An 8-bit RGB image in row-major HWC order.</summary>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Pixels">Width·Height·3 bytes, R G B per pixel.</param>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    /// <summary>Checks that the buffer length matches the size.</summary>
    public RgbImage Validate()
    {
        if (Width <= 0 || Height <= 0) throw new ArgumentException($"Image size must be positive, got {Width}x{Height}.");
        if (Pixels is null || Pixels.Length != (long)Width * Height * 3)
            throw new ArgumentException($"A {Width}x{Height} RGB image needs {(long)Width * Height * 3} bytes, got {Pixels?.Length ?? 0}.");
        return this;
    }
}

/// <summary>
/// The image preprocessing of ScaleDreamer's CLIP evaluation (<c>evaluation/CLIP/evaluation_amortized.py</c>), bit for bit:
/// <c>convert('RGB')</c> (alpha dropped, not composited), the LEFT H×H square of a saved <c>[rgb | normal | opacity | depth]</c>
/// panel (zero-filled when W &lt; H), Pillow's uint8 <c>BILINEAR</c> resize to 224×224 (antialiased when shrinking), then
/// <c>ToTensor</c> and CLIP's mean/std <c>Normalize</c> in float32.
/// </summary>
public static class ClipImagePreprocessor
{
    /// <summary>CLIP's per-channel mean.</summary>
    public static IReadOnlyList<float> Mean { get; } = [0.48145466f, 0.4578275f, 0.40821073f];

    /// <summary>CLIP's per-channel standard deviation.</summary>
    public static IReadOnlyList<float> Std { get; } = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>Input resolution of the CLIP ViT-L/14 evaluation model.</summary>
    public const int DefaultSize = 224;

    /// <summary>Reads an image file (PNG, JPEG, BMP, ...) as 8-bit RGB, dropping any alpha channel without compositing.</summary>
    public static RgbImage LoadRgb(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Image not found: {path}", path);
        using var data = SKData.Create(path) ?? throw new InvalidDataException($"Cannot read image file {path}.");
        using var codec = SKCodec.Create(data) ?? throw new InvalidDataException($"Not a decodable image: {path}.");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
            throw new InvalidDataException($"Image {path} could not be decoded completely ({result}).");
        var rgba = bitmap.Bytes;
        var rgb = new byte[info.Width * info.Height * 3];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgb[i] = rgba[j];
            rgb[i + 1] = rgba[j + 1];
            rgb[i + 2] = rgba[j + 2];
        }
        return new RgbImage(info.Width, info.Height, rgb);
    }

    /// <summary>Pillow's <c>crop((0, 0, H, H))</c>: the left H×H square; columns past the right edge are 0.</summary>
    public static RgbImage CropLeftSquare(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        image.Validate();
        int h = image.Height, w = image.Width;
        var outPx = new byte[h * h * 3];
        int copy = Math.Min(w, h) * 3;
        for (int y = 0; y < h; y++)
            Buffer.BlockCopy(image.Pixels, y * w * 3, outPx, y * h * 3, copy);
        return new RgbImage(h, h, outPx);
    }

    /// <summary>
    /// Pillow's <c>resize((width, height), BILINEAR)</c> on 8-bit RGB: separable triangle filter whose support scales with the
    /// reduction factor (antialiasing), fixed-point coefficients with 22 fractional bits, horizontal pass first into a uint8
    /// intermediate, each pass rounded and clamped; a pass is skipped when its axis keeps its size.
    /// </summary>
    public static RgbImage ResizeBilinear(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        image.Validate();
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"Target size must be positive, got {width}x{height}.");
        var current = image;
        if (width != image.Width) current = ResizeAxis(current, width, horizontal: true);
        if (height != image.Height) current = ResizeAxis(current, height, horizontal: false);
        return ReferenceEquals(current, image) ? image with { Pixels = (byte[])image.Pixels.Clone() } : current;
    }

    const int PrecisionBits = 22;

    static RgbImage ResizeAxis(RgbImage src, int outSize, bool horizontal)
    {
        int inSize = horizontal ? src.Width : src.Height;
        var (bounds, coeffs, kSize) = Coefficients(inSize, outSize);
        int w = horizontal ? outSize : src.Width, h = horizontal ? src.Height : outSize;
        var dst = new byte[w * h * 3];
        var s = src.Pixels;
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                int o = horizontal ? x : y;
                int xmin = bounds[2 * o], count = bounds[2 * o + 1];
                int kOff = o * kSize;
                for (int c = 0; c < 3; c++)
                {
                    long acc = 1L << (PrecisionBits - 1);
                    for (int k = 0; k < count; k++)
                    {
                        int srcIndex = horizontal ? (y * src.Width + xmin + k) * 3 + c : ((xmin + k) * src.Width + x) * 3 + c;
                        acc += (long)coeffs[kOff + k] * s[srcIndex];
                    }
                    long v = acc >> PrecisionBits;
                    dst[(y * w + x) * 3 + c] = (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
        return horizontal ? new RgbImage(outSize, src.Height, dst) : new RgbImage(src.Width, outSize, dst);
    }

    // Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle, support 1) filter.
    static (int[] Bounds, int[] Coeffs, int KSize) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = 1.0 * filterScale;
        int kSize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var coeffs = new int[outSize * kSize];
        var k = new double[kSize];
        double ss = 1.0 / filterScale;
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            double ww = 0;
            for (int x = 0; x < xmax; x++)
            {
                double t = Math.Abs((x + xmin - center + 0.5) * ss);
                double wgt = t < 1.0 ? 1.0 - t : 0.0;
                k[x] = wgt;
                ww += wgt;
            }
            for (int x = 0; x < xmax; x++)
            {
                double wgt = ww != 0.0 ? k[x] / ww : k[x];
                coeffs[i * kSize + x] = wgt < 0 ? (int)(-0.5 + wgt * (1 << PrecisionBits)) : (int)(0.5 + wgt * (1 << PrecisionBits));
            }
            bounds[2 * i] = xmin;
            bounds[2 * i + 1] = xmax;
        }
        return (bounds, coeffs, kSize);
    }

    /// <summary><c>Normalize(mean, std)(ToTensor(image))</c> in float32: a [3, H, W] tensor on the CPU.</summary>
    public static Tensor ToPixelValues(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        image.Validate();
        int hw = image.Width * image.Height;
        var data = new float[3 * hw];
        var p = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            float mean = Mean[c], std = Std[c];
            for (int i = 0; i < hw; i++)
            {
                float x = p[i * 3 + c] / 255f;
                data[c * hw + i] = (x - mean) / std;
            }
        }
        return tensor(data, new long[] { 3, image.Height, image.Width }, ScalarType.Float32);
    }

    /// <summary>The reference evaluation's whole transform of one decoded image: left square, Pillow bilinear to <paramref name="size"/>, normalise.</summary>
    public static Tensor Preprocess(RgbImage image, int size = DefaultSize) =>
        ToPixelValues(ResizeBilinear(CropLeftSquare(image), size, size));

    /// <summary>Loads and preprocesses one saved test image exactly as the reference evaluation does; [3, size, size] float32 on the CPU.</summary>
    public static Tensor LoadAndPreprocess(string path, int size = DefaultSize) => Preprocess(LoadRgb(path), size);

    /// <summary>
    /// Preprocesses renders already in memory: <paramref name="rgb"/> is [B, 3, H, W] (or [3, H, W]) with values in [0, 1].
    /// With <paramref name="exact"/> (default) each image is quantised as threestudio saves it (<c>uint8(clip(x, 0, 1)·255)</c>,
    /// truncating) and then run through the bit-exact Pillow path on the CPU, so the result equals evaluating the saved PNG.
    /// Otherwise it stays on the tensor's device: left square, <c>interpolate(bilinear, antialias: true)</c> (within one uint8
    /// level of Pillow), normalise. Returns [B, 3, size, size] float32 on the input's device.
    /// </summary>
    public static Tensor FromRenders(Tensor rgb, bool exact = true, int size = DefaultSize)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (rgb.ndim == 3) rgb = rgb.unsqueeze(0);
        if (rgb.ndim != 4 || rgb.shape[1] != 3)
            throw new ArgumentException($"Renders must be [B, 3, H, W] or [3, H, W], got [{string.Join(", ", rgb.shape)}].", nameof(rgb));
        using var scope = NewDisposeScope();
        long b = rgb.shape[0], h = rgb.shape[2], w = rgb.shape[3];
        if (exact)
        {
            var u8 = (rgb.detach().to(ScalarType.Float32, CPU).clamp(0, 1) * 255f).to(ScalarType.Byte).permute(0, 2, 3, 1).contiguous();
            var outputs = new List<Tensor>();
            for (long i = 0; i < b; i++)
            {
                var bytes = u8[i].data<byte>().ToArray();
                outputs.Add(Preprocess(new RgbImage((int)w, (int)h, bytes), size));
            }
            return stack(outputs).to(rgb.device).MoveToOuterDisposeScope();
        }
        var x = rgb.to(ScalarType.Float32);
        if (w >= h) x = x[.., .., .., ..(int)h];
        else x = nn.functional.pad(x, new long[] { 0, h - w, 0, 0 });
        x = nn.functional.interpolate(x, new long[] { size, size }, mode: InterpolationMode.Bilinear, align_corners: false, antialias: true);
        var mean = tensor(Mean.ToArray(), ScalarType.Float32, x.device).view(1, 3, 1, 1);
        var std = tensor(Std.ToArray(), ScalarType.Float32, x.device).view(1, 3, 1, 1);
        return ((x - mean) / std).MoveToOuterDisposeScope();
    }
}
