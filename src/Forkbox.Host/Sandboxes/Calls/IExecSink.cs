using System.Text.Json;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Where a call's events go as they arrive from the agent (the HTTP response, in the API).
/// Writes are buffered until <see cref="FlushAsync"/>, which the manager calls once per agent frame.
/// </summary>
public interface IExecSink
{
    void Output(bool stderr, string line);
    void Result(JsonElement data);
    void Error(string name, string value, string traceback);
    void Exit(int code, bool timeout);
    ValueTask FlushAsync(CancellationToken ct);
}
