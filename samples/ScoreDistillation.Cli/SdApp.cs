using System.CommandLine;
using System.CommandLine.Invocation;

namespace ScoreDistillation.Cli;

/// <summary>A user-facing error: printed as one line plus usage, never as a stack trace.</summary>
sealed class CliException(string message) : Exception(message);

/// <summary>The <c>sd</c> command line.</summary>
public static class SdApp
{
    /// <summary>Runs the CLI and returns the process exit code (0 ok, 1 usage or input error, 2 failure).</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var root = Build();
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        if (output is not null) config.Output = output;
        if (error is not null) config.Error = error;
        var err = config.Error;
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) err.WriteLine($"error: {e.Message}");
            err.WriteLine();
            WriteUsage(parse.CommandResult.Command, err);
            return 1;
        }
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e) when (e is CliException or ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or InvalidOperationException)
        {
            err.WriteLine($"error: {e.Message}");
            if (Environment.GetEnvironmentVariable("SD_DEBUG") == "1") err.WriteLine(e);
            err.WriteLine();
            WriteUsage(parse.CommandResult.Command, err);
            return e is CliException or ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException ? 1 : 2;
        }
        catch (OperationCanceledException)
        {
            err.WriteLine("cancelled.");
            return 130;
        }
    }

    static void WriteUsage(Command command, TextWriter writer)
    {
        var cfg = new InvocationConfiguration { Output = writer, Error = writer };
        FindRoot(command).Parse(PathTo(command).Append("--help").ToArray()).Invoke(cfg);
    }

    static Command FindRoot(Command c)
    {
        var p = c;
        while (p.Parents.OfType<Command>().FirstOrDefault() is { } parent) p = parent;
        return p;
    }

    static IEnumerable<string> PathTo(Command c)
    {
        var names = new List<string>();
        var p = c;
        while (p.Parents.OfType<Command>().FirstOrDefault() is { } parent) { names.Insert(0, p.Name); p = parent; }
        return names;
    }

    /// <summary>The command tree.</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("sd — text-to-3D by score distillation (ScaleDreamer's ASD and friends) on TorchSharp.");
        root.Add(Commands.Generate());
        root.Add(Commands.Train());
        root.Add(Commands.Render());
        root.Add(Commands.Export());
        root.Add(Commands.Compare());
        root.Add(EvaluateCommand.Create());
        return root;
    }
}
