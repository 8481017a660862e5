using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Core.Wire;

namespace Forkbox.Client;

/// <summary>
/// A connection to a Forkbox host or edge. One HttpClient is shared by every client and sandbox in
/// the process, so calls reuse kept-alive connections. Defaults come from FORKBOX_HOST (else
/// http://127.0.0.1:7070) and FORKBOX_API_KEY.
/// </summary>
public sealed class ForkboxClient
{
    private static readonly HttpClient Http = new(new SocketsHttpHandler
    {
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        AutomaticDecompression = DecompressionMethods.None,
        UseProxy = false,
    })
    {
        Timeout = Timeout.InfiniteTimeSpan, // calls carry their own timeouts; streams may run long
    };

    public ForkboxClient(string? host = null, string? apiKey = null)
    {
        var h = host ?? Environment.GetEnvironmentVariable("FORKBOX_HOST") ?? "http://127.0.0.1:7070";
        if (!h.Contains("://", StringComparison.Ordinal)) h = "http://" + h;
        BaseAddress = new Uri(h.TrimEnd('/') + "/");
        ApiKey = apiKey ?? Environment.GetEnvironmentVariable("FORKBOX_API_KEY");
    }

    public static ForkboxClient Default { get; } = new();

    public Uri BaseAddress { get; }
    public string? ApiKey { get; }

    internal HttpRequestMessage Request(HttpMethod method, string path, HttpContent? content = null)
    {
        var req = new HttpRequestMessage(method, new Uri(BaseAddress, path)) { Content = content };
        if (ApiKey is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        return req;
    }

    /// <summary>
    /// Sends a request; an error status becomes the matching <see cref="ForkboxApiException"/>.
    /// Retried only where that is safe: any request whose connection could not be made (nothing
    /// was sent), unless its body is a stream that cannot be read twice. Idempotent requests (GET,
    /// PUT, DELETE) whose connection dropped are retried by .NET's handler itself; an exec or a
    /// create whose bytes went out never is.
    /// </summary>
    internal async Task<HttpResponseMessage> SendAsync(HttpRequestMessage req, CancellationToken ct,
        HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        for (var attempt = 0; ; attempt++)
        {
            HttpResponseMessage resp;
            try
            {
                resp = await Http.SendAsync(req, completion, ct).ConfigureAwait(false);
            }
            catch (HttpRequestException e) when (attempt < RetryDelays.Length && Retryable(req, e))
            {
                await Task.Delay(RetryDelays[attempt], ct).ConfigureAwait(false);
                req = Copy(req);
                continue;
            }
            if (resp.IsSuccessStatusCode) return resp;
            using (resp)
                throw await ToExceptionAsync(resp, ct).ConfigureAwait(false);
        }
    }

    private static readonly TimeSpan[] RetryDelays = [TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(400)];

    private static bool Retryable(HttpRequestMessage req, HttpRequestException e) =>
        e.HttpRequestError == HttpRequestError.ConnectionError && req.Content is null or ByteArrayContent or ReadOnlyMemoryContent;

    /// <summary>A request message is sent once; a retry sends a copy (the buffered body is read again).</summary>
    private static HttpRequestMessage Copy(HttpRequestMessage req)
    {
        var copy = new HttpRequestMessage(req.Method, req.RequestUri) { Content = req.Content, Version = req.Version };
        foreach (var (name, values) in req.Headers) copy.Headers.TryAddWithoutValidation(name, values);
        return copy;
    }

    internal async Task<T> SendJsonAsync<T>(HttpRequestMessage req, JsonTypeInfo<T> type, CancellationToken ct)
    {
        using var resp = await SendAsync(req, ct).ConfigureAwait(false);
        await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        return await JsonSerializer.DeserializeAsync(body, type, ct).ConfigureAwait(false)
               ?? throw new ForkboxApiException((int)resp.StatusCode, "bad_response", "empty response body");
    }

    internal static HttpContent Json<T>(T value, JsonTypeInfo<T> type) =>
        new StringContent(JsonSerializer.Serialize(value, type), Encoding.UTF8, "application/json");

    private static async Task<ForkboxApiException> ToExceptionAsync(HttpResponseMessage resp, CancellationToken ct)
    {
        var text = await resp.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
        try
        {
            var err = JsonSerializer.Deserialize(text, WireJson.Default.ErrorBody);
            if (err is not null) return ForkboxApiException.From((int)resp.StatusCode, err.Code, err.Error, resp.Headers.RetryAfter?.Delta);
        }
        catch (JsonException)
        {
        }
        return ForkboxApiException.From((int)resp.StatusCode, "http_error", text.Length > 0 ? text : resp.ReasonPhrase ?? "error",
            resp.Headers.RetryAfter?.Delta);
    }

    public Task<Sandbox> CreateSandboxAsync(CreateSandboxRequest? options = null, CancellationToken ct = default) =>
        Sandbox.CreateAsync(options, this, ct);

    public Task<CapacityInfo> CapacityAsync(CancellationToken ct = default) =>
        SendJsonAsync(Request(HttpMethod.Get, "v1/capacity"), WireJson.Default.CapacityInfo, ct);

    /// <summary>Sets how many ready sandboxes the server keeps for a template.</summary>
    public Task<PoolInfo> SetPoolSizeAsync(string template, int size, CancellationToken ct = default) =>
        SendJsonAsync(Request(HttpMethod.Put, $"v1/templates/{Uri.EscapeDataString(template)}/pool",
            Json(new PoolSizeRequest { Size = size }, WireJson.Default.PoolSizeRequest)), WireJson.Default.PoolInfo, ct);

    public Task<TemplateList> ListTemplatesAsync(CancellationToken ct = default) =>
        SendJsonAsync(Request(HttpMethod.Get, "v1/templates"), WireJson.Default.TemplateList, ct);

    public async Task DeleteTemplateAsync(string name, CancellationToken ct = default)
    {
        using var _ = await SendAsync(Request(HttpMethod.Delete, $"v1/templates/{Uri.EscapeDataString(name)}"), ct).ConfigureAwait(false);
    }

    /// <summary>Every sandbox on the host; with a name, only this API key's sandbox of that name (none or one).</summary>
    public Task<SandboxList> ListSandboxesAsync(string? name = null, CancellationToken ct = default) =>
        SendJsonAsync(Request(HttpMethod.Get, name is null ? "v1/sandboxes" : $"v1/sandboxes?name={Uri.EscapeDataString(name)}"), WireJson.Default.SandboxList, ct);

    /// <summary>Destroys a sandbox by id; false when there was none (already closed, or not this key's), which is not an error.</summary>
    public async Task<bool> DeleteSandboxAsync(string id, CancellationToken ct = default)
    {
        try
        {
            using var _ = await SendAsync(Request(HttpMethod.Delete, $"v1/sandboxes/{Uri.EscapeDataString(id)}"), ct).ConfigureAwait(false);
            return true;
        }
        catch (ForkboxApiException e) when (e.Status == (int)HttpStatusCode.NotFound)
        {
            return false;
        }
    }
}
