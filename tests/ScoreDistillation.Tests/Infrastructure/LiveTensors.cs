using TorchSharp;

namespace ScoreDistillation.Tests.Infrastructure;

/// <summary>Live-tensor counting for leak tests (tensors tracked by dispose scopes on this thread).</summary>
public static class LiveTensors
{
    /// <summary>Tensors currently alive on this thread as counted by TorchSharp's dispose-scope statistics.</summary>
    public static long Count => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
}
