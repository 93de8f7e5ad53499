// Marks one symbol-version requirement of an ELF shared library as weak (VER_FLG_WEAK).
//
// Why: libLibTorchSharp.so 0.107.0 lists GLIBCXX_3.4.32 (GCC 13) in .gnu.version_r for one symbol,
// std::ios_base_library_init, a marker that no relocation uses. Debian 12 and Ubuntu 22.04 ship
// libstdc++ up to GLIBCXX_3.4.30, so the dynamic loader refuses the library and TorchSharp reports
// a misleading "doesn't contain a reference to libtorch" error. A weak version need only warns.
//
// Compiled twice: by MSBuild's RoslynCodeTaskFactory (build/TorchBackend.targets) as the task
// WeakenElfVersionNeed, and by the tests with ELF_PATCHER_LOGIC_ONLY (no MSBuild references).
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
#if !ELF_PATCHER_LOGIC_ONLY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

/// <summary>Outcome of <see cref="ElfVersionNeedPatcher.Weaken(byte[], string)"/>.</summary>
public enum ElfPatchOutcome
{
    /// <summary>The flag was set by this call.</summary>
    Patched,
    /// <summary>The entry was already weak; nothing changed.</summary>
    AlreadyWeak,
    /// <summary>The file does not require that version.</summary>
    VersionNotRequired,
}

/// <summary>Pure logic of the patch: parse ELF64 little-endian section headers and .gnu.version_r.</summary>
public static class ElfVersionNeedPatcher
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Sets VER_FLG_WEAK on every vernaux entry named <paramref name="version"/>, in place.</summary>
    public static ElfPatchOutcome Weaken(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only 64-bit little-endian ELF files are supported");

        ulong shoff = ReadU64(elf, 0x28);
        int shentsize = ReadU16(elf, 0x3A);
        int shnum = ReadU16(elf, 0x3C);
        if (shoff == 0 || shnum == 0) throw new InvalidDataException("ELF file has no section headers");

        var outcome = ElfPatchOutcome.VersionNotRequired;
        for (int i = 0; i < shnum; i++)
        {
            int sh = Checked(elf, shoff + (ulong)(i * shentsize), 64);
            if (ReadU32(elf, sh + 4) != ShtGnuVerneed) continue;

            int secOff = Checked(elf, ReadU64(elf, sh + 0x18), (int)ReadU64(elf, sh + 0x20));
            int link = (int)ReadU32(elf, sh + 0x28);
            int count = (int)ReadU32(elf, sh + 0x2C);
            int strSh = Checked(elf, shoff + (ulong)(link * shentsize), 64);
            int strOff = Checked(elf, ReadU64(elf, strSh + 0x18), (int)ReadU64(elf, strSh + 0x20));

            int vn = secOff;
            for (int n = 0; n < count; n++)
            {
                int cnt = ReadU16(elf, Checked(elf, (ulong)vn, 16) + 2);
                int aux = vn + (int)ReadU32(elf, vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    Checked(elf, (ulong)aux, 16);
                    string name = ReadCString(elf, strOff + (int)ReadU32(elf, aux + 8));
                    if (name == version)
                    {
                        ushort flags = ReadU16(elf, aux + 4);
                        if ((flags & VerFlgWeak) != 0)
                        {
                            if (outcome == ElfPatchOutcome.VersionNotRequired) outcome = ElfPatchOutcome.AlreadyWeak;
                        }
                        else
                        {
                            WriteU16(elf, aux + 4, (ushort)(flags | VerFlgWeak));
                            outcome = ElfPatchOutcome.Patched;
                        }
                    }
                    aux += (int)ReadU32(elf, aux + 12);
                }
                uint next = ReadU32(elf, vn + 12);
                if (next == 0) break;
                vn += (int)next;
            }
        }
        return outcome;
    }

    /// <summary>Patches a file by writing a sibling temporary file and renaming it over the original, so a hard or
    /// symbolic link into the NuGet cache is replaced, never written through.</summary>
    public static ElfPatchOutcome WeakenFile(string path, string version)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var outcome = Weaken(bytes, version);
        if (outcome != ElfPatchOutcome.Patched) return outcome;
        string temp = path + ".weak-" + Guid.NewGuid().ToString("N") + ".tmp";
        try
        {
            File.WriteAllBytes(temp, bytes);
            // File.Replace renames over the destination (rename(2) on Unix); netstandard2.0 has no File.Move overwrite.
            File.Replace(temp, path, null);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return outcome;
    }

    /// <summary>True when a libstdc++ of this host defines <paramref name="version"/>.</summary>
    public static bool HostLibStdCxxProvides(string version)
    {
        foreach (string lib in HostLibStdCxxCandidates())
        {
            if (File.Exists(lib) && Contains(File.ReadAllBytes(lib), Encoding.ASCII.GetBytes(version + "\0")))
                return true;
        }
        return false;
    }

    static IEnumerable<string> HostLibStdCxxCandidates()
    {
        string[] dirs =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
            "/usr/lib64", "/lib64", "/usr/lib", "/lib",
        };
        foreach (string d in dirs) yield return Path.Combine(d, "libstdc++.so.6");
    }

    static bool Contains(byte[] haystack, byte[] needle)
    {
        // netstandard2.0 (MSBuild's code task compiler) has no span search.
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (haystack[i] != needle[0]) continue;
            int k = 1;
            while (k < needle.Length && haystack[i + k] == needle[k]) k++;
            if (k == needle.Length) return true;
        }
        return false;
    }

    static int Checked(byte[] b, ulong off, int len)
    {
        if (off > (ulong)b.Length || (ulong)len > (ulong)b.Length - off)
            throw new InvalidDataException("ELF structure points outside the file (offset " + off + ")");
        return (int)off;
    }

    static string ReadCString(byte[] b, int off)
    {
        int end = Array.IndexOf(b, (byte)0, off);
        if (end < 0) throw new InvalidDataException("unterminated string in ELF string table");
        return Encoding.ASCII.GetString(b, off, end - off);
    }

    static ushort ReadU16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
    static uint ReadU32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
    static ulong ReadU64(byte[] b, int o) => ReadU32(b, o) | (ulong)ReadU32(b, o + 4) << 32;
    static void WriteU16(byte[] b, int o, ushort v) { b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); }
}

#if !ELF_PATCHER_LOGIC_ONLY
/// <summary>MSBuild task: weakens <see cref="Version"/> in each existing file of <see cref="Files"/> when the host libstdc++
/// lacks it. Idempotent; never touches the NuGet cache (the patched copy replaces the output file by rename).</summary>
public sealed class WeakenElfVersionNeed : Task
{
    /// <summary>Candidate library paths; missing ones are ignored.</summary>
    [Required]
    public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

    /// <summary>The version need to weaken, e.g. GLIBCXX_3.4.32.</summary>
    [Required]
    public string Version { get; set; } = "";

    /// <summary>Patch even when the host provides the version.</summary>
    public bool Force { get; set; }

    /// <inheritdoc />
    public override bool Execute()
    {
        bool any = false;
        foreach (var item in Files) any |= File.Exists(item.ItemSpec);
        if (!any) return true;
        if (!Force && ElfVersionNeedPatcher.HostLibStdCxxProvides(Version))
        {
            Log.LogMessage(MessageImportance.Low, "Host libstdc++ provides " + Version + "; no ELF patch needed.");
            return true;
        }
        foreach (var item in Files)
        {
            string path = item.ItemSpec;
            if (!File.Exists(path)) continue;
            try
            {
                var outcome = ElfVersionNeedPatcher.WeakenFile(path, Version);
                Log.LogMessage(MessageImportance.Normal, path + ": " + Version + " " + outcome);
            }
            catch (Exception e)
            {
                Log.LogError("Could not weaken " + Version + " in " + path + ": " + e.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }
}
#endif
