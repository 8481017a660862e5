using System.Net;
using System.Text.Json;

namespace Forkbox.IntegrationTests.Api;

/// <summary>Sends a request that should fail and reads the error body: status, code, message, and the Allow header of a 405.</summary>
internal static class ApiError
{
    public static async Task<(HttpStatusCode Status, string Code, string Message, string Allow)> SendAsync(HttpClient http, HttpRequestMessage req)
    {
        using var resp = await http.SendAsync(req);
        using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
        return (resp.StatusCode, doc.RootElement.GetProperty("code").GetString()!, doc.RootElement.GetProperty("error").GetString()!,
            string.Join(", ", resp.Content.Headers.Allow));
    }
}
