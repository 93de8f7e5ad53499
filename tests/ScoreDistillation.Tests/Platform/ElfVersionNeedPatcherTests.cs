using FluentAssertions;
using Xunit;

namespace ScoreDistillation.Tests.Platform;

public class ElfVersionNeedPatcherTests
{
    const string Version = "GLIBCXX_3.4.32";

    static string NuGetCopy()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    static string OutputCopy() => Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so") is var p && File.Exists(p)
        ? p
        : Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    [Fact]
    public void Patch_changes_exactly_one_flag_byte_and_is_idempotent()
    {
        if (!OperatingSystem.IsLinux()) return;
        byte[] original = File.ReadAllBytes(NuGetCopy());
        byte[] patched = (byte[])original.Clone();

        ElfVersionNeedPatcher.Weaken(patched, Version).Should().Be(ElfPatchOutcome.Patched);
        var diffs = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToArray();
        diffs.Should().HaveCount(1, "only the vna_flags of the GLIBCXX_3.4.32 entry may change");
        (patched[diffs[0]] ^ original[diffs[0]]).Should().Be(0x2, "VER_FLG_WEAK is bit 1");

        byte[] again = (byte[])patched.Clone();
        ElfVersionNeedPatcher.Weaken(again, Version).Should().Be(ElfPatchOutcome.AlreadyWeak);
        again.Should().Equal(patched);
    }

    [Fact]
    public void Patch_of_a_version_the_file_does_not_need_changes_nothing()
    {
        if (!OperatingSystem.IsLinux()) return;
        byte[] original = File.ReadAllBytes(NuGetCopy());
        byte[] copy = (byte[])original.Clone();
        ElfVersionNeedPatcher.Weaken(copy, "GLIBCXX_99.0").Should().Be(ElfPatchOutcome.VersionNotRequired);
        copy.Should().Equal(original);
    }

    [Fact]
    public void Output_copy_is_patched_exactly_when_the_host_lacks_the_version_and_the_cache_is_untouched()
    {
        if (!OperatingSystem.IsLinux()) return;
        byte[] cache = File.ReadAllBytes(NuGetCopy());
        byte[] output = File.ReadAllBytes(OutputCopy());
        var probe = (byte[])cache.Clone();
        ElfVersionNeedPatcher.Weaken(probe, Version).Should().Be(ElfPatchOutcome.Patched, "the NuGet cache copy must never be patched");
        if (ElfVersionNeedPatcher.HostLibStdCxxProvides(Version))
            output.Should().Equal(cache);
        else
            output.Should().Equal(probe);
    }

    [Fact]
    public void Patching_a_file_replaces_it_by_rename_and_leaves_a_hard_linked_original_intact()
    {
        if (!OperatingSystem.IsLinux()) return;
        string dir = Directory.CreateTempSubdirectory("elfpatch").FullName;
        try
        {
            string original = Path.Combine(dir, "original.so");
            string link = Path.Combine(dir, "link.so");
            File.Copy(NuGetCopy(), original);
            File.CreateSymbolicLink(link, original);
            byte[] before = File.ReadAllBytes(original);

            ElfVersionNeedPatcher.WeakenFile(link, Version).Should().Be(ElfPatchOutcome.Patched);
            ElfVersionNeedPatcher.WeakenFile(link, Version).Should().Be(ElfPatchOutcome.AlreadyWeak);

            File.ReadAllBytes(original).Should().Equal(before, "the link target must not be written through");
            new FileInfo(link).LinkTarget.Should().BeNull("the link is replaced by a patched regular file");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Garbage_is_rejected_with_a_clear_error()
    {
        var act = () => ElfVersionNeedPatcher.Weaken(new byte[100], Version);
        act.Should().Throw<InvalidDataException>().WithMessage("*not an ELF*");
    }
}
