using System.Diagnostics;
using FluentAssertions;
using ScoreDistillation.Diffusion.BuiltIn;
using ScoreDistillation.Priors;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.BuiltIn;

/// <summary>
/// Measures (never asserts on) the cost of one ASD-sized prior call: 3×8 rows [x_t; x_t; x_{t+Δt}] with
/// [cond; uncond; cond] text over 8 different prompts, and the cost of rendering the references. Numbers go to docs.
/// </summary>
[Trait("Category", "Slow")]
public class BuiltInTimingTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    public void One_asd_sized_prior_call(int size)
    {
        using var scope = NewDisposeScope();
        var prompts = new[] { "a red cube", "a blue sphere", "a green torus", "a yellow cone", "a purple capsule", "an orange pyramid", "a cyan octahedron", "a pink prism" };
        var options = new BuiltInPriorOptions { References = new ReferenceLibraryOptions { ImageSize = size } };
        using var prior = new BuiltInPrior(options);
        var sw = Stopwatch.StartNew();
        var text = prior.EncodeText(prompts);
        double renderCond = sw.Elapsed.TotalSeconds;
        sw.Restart();
        int uncondViews = prior.Library.Unconditional.Count;
        double renderUncond = sw.Elapsed.TotalSeconds;
        using var uncond = prior.EncodeText(Enumerable.Repeat("", 8).ToArray());
        var tokens = cat(new[] { text.Tokens, uncond.Tokens, text.Tokens }, 0);
        using var g = new TorchSharp.torch.Generator(0);
        var x = randn(new long[] { 24, 3, size, size }, generator: g);
        var t = randint(20, 981, new long[] { 24 }, generator: g);
        var query = new NoiseQuery(x, t, tokens);
        prior.PredictNoise(query); // warm-up
        const int reps = 5;
        sw.Restart();
        for (int i = 0; i < reps; i++)
        {
            using var inner = NewDisposeScope();
            prior.PredictNoise(query);
        }
        double call = sw.Elapsed.TotalMilliseconds / reps;
        output.WriteLine($"{size}²: one ASD prior call (24 rows, 8 prompts × 32 views + {uncondViews} unconditional views): {call:F1} ms; " +
            $"rendering 8×32 references {renderCond:F1} s ({renderCond / 256 * 1000:F0} ms/view), {uncondViews} unconditional views {renderUncond:F1} s; threads {get_num_threads()}");
        call.Should().BePositive();
    }
}

[Trait("Category", "Slow")]
public class ReferenceRenderCostTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(32, 48, 32)]
    [InlineData(32, 32, 16)]
    [InlineData(64, 48, 32)]
    [InlineData(64, 32, 16)]
    public void Reference_render_cost_and_error_against_a_dense_render(int size, int proposal, int importance)
    {
        using var scope = NewDisposeScope();
        var prompts = new[] { "a red cube", "a green torus" };
        ReferenceLibraryOptions Options(int p, int i) => new()
        {
            ImageSize = size,
            ViewsPerPrompt = 4,
            UnconditionalPrompts = prompts,
            Renderer = new ReferenceLibraryOptions().Renderer with { ProposalSamples = p, ImportanceSamples = i },
        };
        using var dense = new ReferenceLibrary(Options(128, 64));
        using var fast = new ReferenceLibrary(Options(proposal, importance));
        dense.Prefetch(prompts);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        fast.Prefetch(prompts);
        double perView = sw.Elapsed.TotalMilliseconds / 8;
        double err = prompts.Max(p => (fast.ForPrompt(p).Images - dense.ForPrompt(p).Images).abs().max().item<float>());
        double mean = prompts.Average(p => (fast.ForPrompt(p).Images - dense.ForPrompt(p).Images).abs().mean().item<float>());
        output.WriteLine($"{size}², {proposal}+{importance} samples: {perView:F0} ms/view; vs 128+64: max |Δ| {err:F4}, mean |Δ| {mean:F5}");
        perView.Should().BePositive();
    }
}
