using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace ScoreDistillation.Benchmarks;

/// <summary>Runs the benchmarks in-process: the out-of-process toolchain would rebuild without the libLibTorchSharp patch.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
#if DEBUG
        Console.Error.WriteLine("Benchmarks built in Debug are not representative; use -c Release.");
#endif
        // Measure the kernels training uses: oneDNN convolution backward is unreliable on CPU in LibTorch 2.10 (see LibTorchCpu).
        ScoreDistillation.Platform.LibTorchCpu.TryDisableOneDnn();
        var config = DefaultConfig.Instance
            .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance))
            .WithOptions(ConfigOptions.DisableOptimizationsValidator);
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }
}
