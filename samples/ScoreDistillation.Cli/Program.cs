using System.CommandLine;
using ScoreDistillation.Cli;

return SdApp.Run(args);
