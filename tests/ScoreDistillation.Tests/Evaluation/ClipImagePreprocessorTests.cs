using FluentAssertions;
using ScoreDistillation.Evaluation;
using ScoreDistillation.Tests.Infrastructure;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Evaluation;

public class ClipImagePreprocessorTests
{
    static readonly Lazy<Dictionary<string, Tensor>> Cases = new(() => TestVectors.LoadSafetensors("clip-eval", "preprocess_cases.safetensors"));

    static RgbImage Image(Tensor hwc) => new((int)hwc.shape[1], (int)hwc.shape[0], hwc.contiguous().data<byte>().ToArray());

    [Theory]
    [InlineData("case0_64x64")]
    [InlineData("case1_96x80")]
    [InlineData("case2_512x512")]
    public void Pixel_values_are_bit_exact_with_the_reference_script(string name)
    {
        var d = Cases.Value;
        var img = Image(d[$"{name}.image_u8"]);
        if (d.TryGetValue($"{name}.cropped_u8", out var cropped))
            CropLeft(img).Pixels.Should().Equal(cropped.data<byte>().ToArray());
        using var pv = ClipImagePreprocessor.Preprocess(img);
        TensorAssert.Close(pv, d[$"{name}.pixel_values"], 0, 0, name);
    }

    [Fact]
    public void Crop_past_the_right_edge_fills_zero_and_resize_matches_pillow()
    {
        var d = Cases.Value;
        var img = Image(d["crop_80x96.image_u8"]);
        var cropped = CropLeft(img);
        cropped.Width.Should().Be(96);
        cropped.Pixels.Should().Equal(d["crop_80x96.cropped_u8"].data<byte>().ToArray());
        ClipImagePreprocessor.ResizeBilinear(cropped, 224, 224).Pixels.Should().Equal(d["crop_80x96.resized_u8"].data<byte>().ToArray());
    }

    [Fact]
    public void Tensor_paths_match_exactly_or_within_one_level()
    {
        using var scope = NewDisposeScope();
        var d = Cases.Value;
        var u8 = d["case2_512x512.image_u8"];
        // [1, 3, H, W] in [0, 1]; the +0.5 keeps threestudio's truncating quantisation at the stored level.
        var rgb = ((u8.permute(2, 0, 1).to(ScalarType.Float32) + 0.5f) / 255f).unsqueeze(0);
        TensorAssert.Close(ClipImagePreprocessor.FromRenders(rgb)[0], d["case2_512x512.pixel_values"], 0, 0, "exact path");
        var approx = ClipImagePreprocessor.FromRenders((u8.permute(2, 0, 1).to(ScalarType.Float32) / 255f), exact: false);
        double err = TensorAssert.MaxAbsError(approx[0], d["case2_512x512.pixel_values"]);
        Console.WriteLine($"antialiased interpolate vs Pillow, 512->224: max abs {err:G3} (normalised units)");
        err.Should().BeLessThan(0.0165);
    }

    [Fact]
    public void Png_files_decode_to_rgb_dropping_alpha_without_compositing()
    {
        string dir = Directory.CreateTempSubdirectory("clipimg").FullName;
        try
        {
            var info = new SKImageInfo(6, 4, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            using var bmp = new SKBitmap(info);
            var rgba = new byte[6 * 4 * 4];
            for (int i = 0; i < rgba.Length; i++) rgba[i] = (byte)(i * 37 % 256);
            for (int i = 3; i < rgba.Length; i += 4) rgba[i] = (byte)(i % 3 == 0 ? 255 : 40);
            System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bmp.GetPixels(), rgba.Length);
            string path = Path.Combine(dir, "a.png");
            using (var stream = File.Create(path)) bmp.Encode(stream, SKEncodedImageFormat.Png, 100).Should().BeTrue();
            var img = ClipImagePreprocessor.LoadRgb(path);
            img.Width.Should().Be(6);
            img.Height.Should().Be(4);
            var expected = rgba.Where((_, i) => i % 4 != 3).ToArray();
            img.Pixels.Should().Equal(expected);

            string bad = Path.Combine(dir, "broken.png");
            File.WriteAllBytes(bad, new byte[] { 0x89, 0x50, 0x4E, 0x47, 1, 2, 3 });
            var act = () => ClipImagePreprocessor.LoadRgb(bad);
            act.Should().Throw<InvalidDataException>().WithMessage("*broken.png*");
        }
        finally { Directory.Delete(dir, true); }
    }

    static RgbImage CropLeft(RgbImage img) => ClipImagePreprocessor.CropLeftSquare(img);
}
