using System.Buffers;
using System.IO.Pipelines;
using System.Text.Encodings.Web;
using System.Text.Json;
using Forkbox.Host.Sandboxes;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Host.Api;

/// <summary>
/// Writes a call's events as NDJSON straight into the response pipe:
/// {"type":"stdout","data":"one line","seq":0,"ts":…}. seq counts from 0 per call; ts is ms since the epoch.
/// </summary>
public sealed class NdjsonExecSink : IExecSink
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };
    private readonly PipeWriter _pipe;
    private readonly Utf8JsonWriter _json;
    private long _seq;

    public NdjsonExecSink(HttpResponse response)
    {
        response.ContentType = "application/x-ndjson";
        response.Headers.CacheControl = "no-cache";
        _pipe = response.BodyWriter;
        _json = new Utf8JsonWriter(_pipe, Options);
    }

    private void Begin(string type)
    {
        _json.Reset(_pipe);
        _json.WriteStartObject();
        _json.WriteString("type"u8, type);
    }

    private void End()
    {
        _json.WriteNumber("seq"u8, _seq++);
        _json.WriteNumber("ts"u8, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        _json.WriteEndObject();
        _json.Flush();
        _pipe.Write("\n"u8);
    }

    public void Output(bool stderr, string line)
    {
        Begin(stderr ? "stderr" : "stdout");
        _json.WriteString("data"u8, line);
        End();
    }

    public void Result(JsonElement data, string dataKind, JsonElement? mime)
    {
        Begin("result");
        _json.WritePropertyName("data"u8);
        data.WriteTo(_json);
        _json.WriteString("data_kind"u8, dataKind);
        if (mime is { } m) WriteMime(m);
        End();
    }

    public void Display(JsonElement mime)
    {
        Begin("display");
        WriteMime(mime);
        End();
    }

    /// <summary>
    /// "mime": the bundle's entries whose content has the shape clients are promised: text (base64
    /// for binary types) for every MIME type, any JSON value for a JSON one (application/json,
    /// *+json), once each. What the agent sent otherwise is left out: it is user code's to change.
    /// </summary>
    private void WriteMime(JsonElement mime)
    {
        _json.WriteStartObject("mime"u8);
        var written = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in mime.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String && !IsJsonType(entry.Name)) continue;
            if (!written.Add(entry.Name)) continue;
            _json.WritePropertyName(entry.Name);
            entry.Value.WriteTo(_json);
        }
        _json.WriteEndObject();
    }

    private static bool IsJsonType(string mimeType) =>
        mimeType == "application/json" || mimeType.EndsWith("+json", StringComparison.Ordinal);

    public void Error(string name, string value, string traceback)
    {
        Begin("error");
        _json.WriteString("name"u8, name);
        _json.WriteString("value"u8, value);
        _json.WriteString("traceback"u8, traceback);
        End();
    }

    public void Exit(int code, bool timeout)
    {
        Begin("exit");
        _json.WriteNumber("data"u8, code);
        if (timeout) _json.WriteBoolean("timeout"u8, true);
        End();
    }

    public async ValueTask FlushAsync(CancellationToken ct)
    {
        var result = await _pipe.FlushAsync(ct).ConfigureAwait(false);
        if (result.IsCanceled || result.IsCompleted)
            throw new IOException("the client has gone");
    }
}
