using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// One frame as <see cref="AgentConnection.ReadMessageAsync"/> reads it: its event, its header's
/// bytes (in the connection's reusable buffer: valid until the next read on it) and its payload.
/// Decode the header into the record its event names before reading again.
/// </summary>
public readonly struct AgentMessage(string ev, ReadOnlyMemory<byte> header, byte[] payload)
{
    /// <summary>The header's "ev", one of <see cref="AgentEvents"/> (the same string instance), or "" when it has none.</summary>
    public string Event => ev;

    public ReadOnlyMemory<byte> Header => header;

    public byte[] Payload => payload;

    public T Decode<T>(JsonTypeInfo<T> type)
    {
        try
        {
            return JsonSerializer.Deserialize(header.Span, type) ?? throw Malformed(typeof(T), null);
        }
        catch (JsonException e)
        {
            throw Malformed(typeof(T), e);
        }
    }

    internal static T Decode<T>(JsonElement header, JsonTypeInfo<T> type)
    {
        try
        {
            return header.Deserialize(type) ?? throw Malformed(typeof(T), null);
        }
        catch (JsonException e)
        {
            throw Malformed(typeof(T), e);
        }
    }

    private static AgentProtocolException Malformed(Type type, JsonException? e) =>
        new($"the sandbox's agent sent a frame that is not a well-formed {type.Name}: {e?.Message ?? "null"}", e);

    /// <summary>
    /// The top-level "ev" of a header, found without building a document; a known event comes
    /// back as its constant, so the hot path allocates no string for it.
    /// </summary>
    public static string EventOf(ReadOnlySpan<byte> header)
    {
        try
        {
            var reader = new Utf8JsonReader(header);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return "";
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isEv = reader.ValueTextEquals("ev"u8);
                if (!reader.Read()) return "";
                if (!isEv)
                {
                    reader.Skip();
                    continue;
                }
                if (reader.TokenType != JsonTokenType.String) return "";
                foreach (var known in AgentEvents.All)
                    if (reader.ValueTextEquals(known))
                        return known;
                return reader.GetString() ?? "";
            }
            return "";
        }
        catch (JsonException e)
        {
            throw new AgentProtocolException($"the sandbox's agent sent a frame whose header is not JSON: {e.Message}", e);
        }
    }
}
