using System.Runtime.CompilerServices;
using TorchSharp;

namespace ScoreDistillation.Tests.Infrastructure;

/// <summary>Process-wide torch settings for the test run.</summary>
static class TorchSetup
{
    [ModuleInitializer]
    internal static void Initialize()
    {
        // One intra-op thread: tests are many small ops on a 2-core machine, where thread hand-offs cost more than they save.
        torch.set_num_threads(1);
        // LibTorch 2.10's oneDNN convolution backward intermittently returns NaN on CPU (see LibTorchCpu).
        if (!ScoreDistillation.Platform.LibTorchCpu.TryDisableOneDnn())
            throw new InvalidOperationException("Could not disable oneDNN in LibTorch; convolution gradients on CPU would be unreliable.");
    }
}
