using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using ModelContextProtocol;

namespace Forkbox.Cli.Mcp;

/// <summary>
/// `forkbox mcp`'s log lines on stderr: one line per entry, timestamped. A JSON-RPC error the session
/// answers on purpose (an <see cref="McpException"/>: bad arguments, an unknown tool) or a cancelled
/// call is an expected outcome, so it is one line with its message and no stack trace; and the SDK's
/// second report of the same error (the tool "threw an unhandled exception", then the request
/// handler "failed") is dropped, so each error is logged once. Any other exception keeps its stack:
/// that is a bug to report.
/// </summary>
internal sealed class McpLogFormatter() : ConsoleFormatter(Name)
{
    public new const string Name = "forkbox-mcp";

    public override void Write<TState>(in LogEntry<TState> entry, IExternalScopeProvider? scopes, TextWriter writer)
    {
        var message = entry.Formatter(entry.State, entry.Exception);
        var expected = entry.Exception is McpException or OperationCanceledException;
        // The tool-level report; the request handler's report of the same exception follows it.
        if (expected && message.EndsWith("threw an unhandled exception.", StringComparison.Ordinal)) return;
        writer.Write(DateTime.Now.ToString("yyyy-MM-ddTHH:mm:ss.fff "));
        writer.Write(Level(entry.LogLevel));
        writer.Write(": ");
        writer.Write(entry.Category);
        writer.Write(": ");
        writer.Write(OneLine(message));
        if (entry.Exception is { } e)
        {
            writer.Write(' ');
            writer.Write(OneLine(expected ? e.Message : e.ToString()));
        }
        writer.Write('\n');
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };
}
