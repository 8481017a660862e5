using System.Text.Json;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Where a call's events go as they arrive from the agent (the HTTP response, in the API).
/// Writes are buffered until <see cref="FlushAsync"/>, which the manager calls once per agent frame.
/// </summary>
public interface IExecSink
{
    void Output(bool stderr, string line);
    /// <summary>A last expression's value: <paramref name="data"/> its JSON value or its repr
    /// (<paramref name="dataKind"/> "json" or "repr"), <paramref name="mime"/> its MIME bundle, an object.</summary>
    void Result(JsonElement data, string dataKind, JsonElement? mime);
    /// <summary>A MIME bundle (an object) the cell showed while it ran.</summary>
    void Display(JsonElement mime);
    void Error(string name, string value, string traceback);
    void Exit(int code, bool timeout);
    ValueTask FlushAsync(CancellationToken ct);
}
