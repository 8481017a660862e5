using System.Text.Json;

namespace Forkbox.Client;

/// <summary>What a finished run_code or exec call produced.</summary>
public sealed record Execution
{
    public required IReadOnlyList<string> StdoutLines { get; init; }
    public required IReadOnlyList<string> StderrLines { get; init; }
    public required int ExitCode { get; init; }
    /// <summary>The value of the cell's last expression (run_code only), as JSON.</summary>
    public JsonElement? Result { get; init; }
    public ExecutionError? Error { get; init; }
    public bool TimedOut { get; init; }
    public required TimeSpan Duration { get; init; }

    public string Stdout => string.Join('\n', StdoutLines);
    public string Stderr => string.Join('\n', StderrLines);
}

/// <summary>An exception raised by the cell: its type name, message and formatted traceback.</summary>
public sealed record ExecutionError(string Name, string Value, string Traceback);
