using FluentAssertions;
using ScoreDistillation.Training;
using ScoreDistillation.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ScoreDistillation.Tests.Training;

public sealed class CheckpointTests : IDisposable
{
    readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("sd-ckpt-");
    public void Dispose() => _dir.Delete(true);

    static readonly Dictionary<string, string> Config = new() { ["generator"] = "ingp", ["prompt"] = "a red cube" };

    static Checkpoint Make(long step, float value)
    {
        var ck = new Checkpoint(step, Config);
        using var m = nn.Linear(3, 2);
        using (no_grad()) m.weight!.fill_(value);
        ck.AddModule("generator", m);
        using var g = new Generator(42);
        ck.AddRng("rng", g);
        ck.Metadata["note"] = "hello";
        return ck;
    }

    [Fact]
    public void Round_trips_modules_rng_and_metadata()
    {
        var path = Path.Combine(_dir.FullName, "a.sdckpt");
        using (var ck = Make(7, 0.25f)) ck.Save(path);
        using var loaded = Checkpoint.Load(path);
        loaded.Step.Should().Be(7);
        loaded.Metadata["note"].Should().Be("hello");
        using var m = nn.Linear(3, 2);
        loaded.LoadModule("generator", m);
        m.weight!.mean().item<float>().Should().Be(0.25f);

        using var g = new Generator(1);
        loaded.LoadRng("rng", g);
        using var fresh = new Generator(42);
        TensorAssert.Close(rand(new long[] { 5 }, generator: g), rand(new long[] { 5 }, generator: fresh), 0, 0);
    }

    [Fact]
    public void A_different_configuration_is_refused_naming_the_difference()
    {
        var path = Path.Combine(_dir.FullName, "a.sdckpt");
        using (var ck = Make(1, 0f)) ck.Save(path);
        using var loaded = Checkpoint.Load(path);
        var other = new Dictionary<string, string>(Config) { ["generator"] = "hyper-ingp" };
        var act = () => loaded.EnsureCompatible(other, path);
        act.Should().Throw<InvalidOperationException>().Which.Message.Should()
            .Contain("generator: checkpoint has 'ingp', this run has 'hyper-ingp'").And.NotContain("prompt:");
        loaded.Invoking(l => l.EnsureCompatible(Config)).Should().NotThrow();
    }

    [Fact]
    public void Corrupted_or_truncated_files_are_refused_and_the_previous_stays_usable()
    {
        var store = new CheckpointStore(_dir.FullName, keep: 2);
        using (var a = Make(100, 1f)) store.Save(a);
        using (var b = Make(200, 2f)) store.Save(b);
        var newest = store.PathFor(200);
        var previousBytes = File.ReadAllBytes(store.PathFor(100));

        // Truncated.
        var bytes = File.ReadAllBytes(newest);
        File.WriteAllBytes(newest, bytes[..(bytes.Length / 2)]);
        ((Action)(() => Checkpoint.Load(newest))).Should().Throw<InvalidDataException>().WithMessage("*truncated*");
        // One flipped bit.
        bytes[bytes.Length / 2] ^= 0x10;
        File.WriteAllBytes(newest, bytes);
        ((Action)(() => Checkpoint.Load(newest))).Should().Throw<InvalidDataException>().WithMessage("*checksum*");

        using var latest = store.LoadLatest(out var rejected);
        latest!.Step.Should().Be(100);
        rejected.Should().ContainSingle().Which.Should().Contain("step-00000200");
        File.ReadAllBytes(store.PathFor(100)).Should().Equal(previousBytes);
    }

    [Fact]
    public void A_failed_write_leaves_the_previous_file_intact_and_no_temporary()
    {
        var path = Path.Combine(_dir.FullName, "c.sdckpt");
        using (var a = Make(1, 1f)) a.Save(path);
        var before = File.ReadAllBytes(path);
        var act = () => AtomicFile.Write(path, s => { s.Write(new byte[100]); throw new IOException("disk full"); });
        act.Should().Throw<IOException>();
        File.ReadAllBytes(path).Should().Equal(before);
        Directory.GetFiles(_dir.FullName, "*.tmp").Should().BeEmpty();
    }

    [Fact]
    public void Store_keeps_only_the_newest()
    {
        var store = new CheckpointStore(_dir.FullName, keep: 2);
        foreach (var s in new[] { 1L, 2, 3 }) using (var c = Make(s, s)) store.Save(c);
        store.List().Select(Path.GetFileName).Should().Equal("step-00000003.sdckpt", "step-00000002.sdckpt");
    }
}
