using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// A typed request as the header-writing callback of the hand-written calls
/// (<c>SandboxManager.FileCallAsync</c>, which writes the call's "id" itself): every field of
/// the record but its id. A bridge while those calls move onto <see cref="AgentClient"/>; not for
/// the exec path (it serialises twice).
/// </summary>
public static class AgentHeaderFields
{
    public static Action<Utf8JsonWriter> Of<T>(T request, JsonTypeInfo<T> type)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(request, type);
        return w =>
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var field in doc.RootElement.EnumerateObject())
                if (!field.NameEquals("id"u8))
                    field.WriteTo(w);
        };
    }
}
