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
    /// <summary>"json" when <see cref="Result"/> is the value itself, "repr" when it is the value's repr (a string); null without a result.</summary>
    public string? ResultKind { get; init; }
    /// <summary>The result's MIME bundle: "text/plain", and "text/html", "image/png" (base64), "image/svg+xml", "application/json"… when the value has them.</summary>
    public IReadOnlyDictionary<string, JsonElement>? ResultMime { get; init; }
    /// <summary>The MIME bundles the cell showed while it ran (a matplotlib figure's plt.show()), in order.</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, JsonElement>> Displays { get; init; } = [];
    public ExecutionError? Error { get; init; }
    public bool TimedOut { get; init; }
    public required TimeSpan Duration { get; init; }

    public string Stdout => string.Join('\n', StdoutLines);
    public string Stderr => string.Join('\n', StderrLines);
}

/// <summary>An exception raised by the cell: its type name, message and formatted traceback.</summary>
public sealed record ExecutionError(string Name, string Value, string Traceback);
