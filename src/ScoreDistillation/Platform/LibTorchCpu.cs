using System.Runtime.InteropServices;
using TorchSharp;

namespace ScoreDistillation.Platform;

/// <summary>
/// Process-wide switches of LibTorch's CPU backend that TorchSharp does not expose.
/// </summary>
/// <remarks>
/// <para>
/// LibTorch 2.10 (TorchSharp 0.107.0) on x86-64 CPUs intermittently returns NaN in the input gradient of a oneDNN
/// (mkldnn) convolution backward: measured on this project's CI machines with a 32→3-channel 3×3 <c>Conv2d</c> on
/// 4×4 images, 1–12 of 300 backward passes had NaN rows although forward, loss and inputs were finite, with one or two
/// threads; with oneDNN disabled, 0 of 14,400. Every small convolutional network trained on the CPU is exposed (VSD's
/// particle model, the 3D-convolution generator, LoRA on a CPU UNet). <see cref="UseOneDnn"/> = <c>false</c> routes
/// CPU convolutions to LibTorch's im2col + GEMM kernels, which do not have the fault. It does not affect CUDA.
/// </para>
/// <para>
/// The switch is LibTorch's own global flag (<c>at::globalContext().setUserEnabledMkldnn</c>), reached through the
/// C++ export of <c>torch_cpu</c> because TorchSharp has no binding for it. The sample apps, tests and benchmarks
/// turn oneDNN off at start-up; a library never flips it behind the caller's back.
/// </para>
/// </remarks>
public static class LibTorchCpu
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate IntPtr GlobalContextFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void SetFlagFn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool value);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.U1)]
    delegate bool GetFlagFn(IntPtr context);

    sealed record Bindings(GlobalContextFn Context, GetFlagFn Get, SetFlagFn Set, GetFlagFn? GetNnpack, SetFlagFn? SetNnpack);

    // Itanium (Linux, macOS) and MSVC (Windows) manglings of at::globalContext(), Context::userEnabledMkldnn() const and
    // Context::setUserEnabledMkldnn(bool). On x64 a member function takes `this` as its first argument.
    static readonly (string Context, string Get, string Set, string GetNnpack, string SetNnpack)[] Manglings =
    {
        ("_ZN2at13globalContextEv", "_ZNK2at7Context17userEnabledMkldnnEv", "_ZN2at7Context20setUserEnabledMkldnnEb",
            "_ZNK2at7Context17userEnabledNNPACKEv", "_ZN2at7Context20setUserEnabledNNPACKEb"),
        ("?globalContext@at@@YAAEAVContext@1@XZ", "?userEnabledMkldnn@Context@at@@QEBA_NXZ", "?setUserEnabledMkldnn@Context@at@@QEAAX_N@Z",
            "?userEnabledNNPACK@Context@at@@QEBA_NXZ", "?setUserEnabledNNPACK@Context@at@@QEAAX_N@Z"),
    };

    static readonly Lazy<Bindings?> Native = new(Bind, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Whether this process's LibTorch build exposes the oneDNN switch (false on an unknown ABI).</summary>
    public static bool CanSwitchOneDnn => Native.Value is not null;

    /// <summary>
    /// Gets or sets whether LibTorch may use oneDNN (mkldnn) kernels for CPU convolutions. LibTorch's default is true;
    /// see the remarks on <see cref="LibTorchCpu"/> for why training on a CPU should set it to false.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException">The LibTorch library in this process does not export the switch.</exception>
    public static bool UseOneDnn
    {
        get
        {
            var b = Native.Value ?? throw Unsupported();
            return b.Get(b.Context());
        }
        set
        {
            var b = Native.Value ?? throw Unsupported();
            b.Set(b.Context(), value);
        }
    }

    /// <summary>
    /// Gets or sets whether LibTorch may use NNPACK for CPU convolutions (LibTorch's default is true). With oneDNN off,
    /// LibTorch tries NNPACK next; on CPUs NNPACK does not support, every convolution then prints
    /// "Could not initialize NNPACK! Reason: Unsupported hardware." before falling back.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException">The LibTorch library in this process does not export the switch.</exception>
    public static bool UseNnpack
    {
        get
        {
            var b = Native.Value;
            if (b?.GetNnpack is null) throw Unsupported();
            return b.GetNnpack(b.Context());
        }
        set
        {
            var b = Native.Value;
            if (b?.SetNnpack is null) throw Unsupported();
            b.SetNnpack(b.Context(), value);
        }
    }

    /// <summary>
    /// Routes CPU convolutions to LibTorch's im2col + GEMM kernels. It turns oneDNN off and, where the switch exists,
    /// NNPACK too, which LibTorch would otherwise try next and which warns on every call on CPUs it does not support.
    /// Returns whether oneDNN could be turned off; where the switch is missing it does nothing and returns false, and
    /// the CPU kernels stay as LibTorch chose.
    /// </summary>
    public static bool TryDisableOneDnn()
    {
        var b = Native.Value;
        if (b is null) return false;
        b.Set(b.Context(), false);
        b.SetNnpack?.Invoke(b.Context(), false);
        return true;
    }

    static PlatformNotSupportedException Unsupported() =>
        new("This LibTorch build does not export at::Context::setUserEnabledMkldnn (looked for the Itanium and MSVC manglings in torch_cpu).");

    static Bindings? Bind()
    {
        // TorchSharp loads its natives on first use; after that, loading torch_cpu by name returns the library already in
        // the process instead of a second copy.
        torch.InitializeDeviceType(DeviceType.CPU);
        foreach (var name in new[] { "libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll", "torch_cpu" })
        {
            if (!NativeLibrary.TryLoad(name, typeof(torch).Assembly, null, out var lib)) continue;
            foreach (var (ctx, get, set, getNnpack, setNnpack) in Manglings)
            {
                if (NativeLibrary.TryGetExport(lib, ctx, out var c) && NativeLibrary.TryGetExport(lib, get, out var g) && NativeLibrary.TryGetExport(lib, set, out var s))
                {
                    bool nnpack = NativeLibrary.TryGetExport(lib, getNnpack, out var gn) & NativeLibrary.TryGetExport(lib, setNnpack, out var sn);
                    return new Bindings(Marshal.GetDelegateForFunctionPointer<GlobalContextFn>(c), Marshal.GetDelegateForFunctionPointer<GetFlagFn>(g), Marshal.GetDelegateForFunctionPointer<SetFlagFn>(s),
                        nnpack ? Marshal.GetDelegateForFunctionPointer<GetFlagFn>(gn) : null, nnpack ? Marshal.GetDelegateForFunctionPointer<SetFlagFn>(sn) : null);
                }
            }
        }
        return null;
    }
}
