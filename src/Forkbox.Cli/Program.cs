using System.CommandLine;
using Forkbox.Cli;

var root = new RootCommand("Forkbox: sandboxes for AI agents that start in a millisecond and fork.");
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(EdgeCommand.Create());
root.Subcommands.Add(KeysCommand.Create());
root.Subcommands.Add(SandboxCommand.Create());
root.Subcommands.Add(TemplateCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(McpCommand.Create());
var parse = root.Parse(args);
return ParseErrors.Report(parse) ?? await parse.InvokeAsync();
