using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace Forkbox.Cli;

/// <summary>
/// Reports a command line that does not parse, each problem once. System.CommandLine makes one
/// error per missing argument, all with the same text ("Required argument missing for command:
/// 'exec'."), so a command missing two arguments printed that line twice without saying which.
/// </summary>
internal static class ParseErrors
{
    /// <summary>Null when System.CommandLine's own report is right (no missing argument); else the exit code, after printing.</summary>
    public static int? Report(ParseResult parse)
    {
        if (parse.Action is not ParseErrorAction) return null;
        var missing = parse.Errors.Select(e => e.SymbolResult).OfType<ArgumentResult>().Where(a => a.Tokens.Count == 0)
            .Select(a => $"<{a.Argument.Name}>").Distinct().ToList();
        if (missing.Count == 0) return null;
        var names = new List<string>();
        for (SymbolResult? r = parse.CommandResult; r is CommandResult c; r = c.Parent) names.Add(c.Command.Name);
        names[^1] = "forkbox"; // the root command is named after the executable
        names.Reverse();
        var command = string.Join(' ', names);
        var argumentNames = parse.Errors.Where(e => e.SymbolResult is ArgumentResult { Tokens.Count: 0 }).ToHashSet();
        Console.Error.WriteLine($"{command}: missing {string.Join(" and ", missing)} (see `{command} --help`)");
        foreach (var other in parse.Errors.Where(e => !argumentNames.Contains(e)).Select(e => e.Message).Distinct())
            Console.Error.WriteLine($"{command}: {other}");
        return 1;
    }
}
