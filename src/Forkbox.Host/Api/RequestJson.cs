using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Core.Errors;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Host.Api;

/// <summary>
/// The one reader of the API's JSON request bodies. A field the call does not know is refused,
/// named, with the call's fields (a typo would otherwise be dropped without a word: "templat"
/// made a default sandbox), and a value of the wrong type names its field and the type it must
/// be, never a .NET type. The field check walks the body with a reader and allocates nothing.
/// </summary>
public static class RequestJson
{
    private const int MaxJsonBody = 16 << 20;

    /// <summary>Reads a JSON body; null for an empty one. Unknown fields, malformed JSON and wrong types are a 400 that names the problem.</summary>
    public static async Task<T?> ReadAsync<T>(HttpContext ctx, JsonTypeInfo<T> type) where T : class
    {
        using var body = await UploadBuffer.ReadAsync(ctx, MaxJsonBody, "JSON body").ConfigureAwait(false);
        return body.Length == 0 ? null : Parse(body.Memory.Span, type);
    }

    public static T? Parse<T>(ReadOnlySpan<byte> json, JsonTypeInfo<T> type)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            if (reader.Read() && reader.TokenType == JsonTokenType.StartObject) CheckFields(ref reader, type, "");
            return JsonSerializer.Deserialize(json, type);
        }
        catch (JsonException e)
        {
            throw new BadRequestException(Describe(e, type));
        }
    }

    /// <summary>Every field of the object the reader is at, and of the objects in it, is one its type has.</summary>
    private static void CheckFields(ref Utf8JsonReader reader, JsonTypeInfo type, string path)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            JsonPropertyInfo? field = null;
            var fields = type.Properties;
            for (var i = 0; i < fields.Count && field is null; i++) // not foreach: its enumerator over the IList would be boxed
                if (reader.ValueTextEquals(fields[i].Name)) field = fields[i];
            if (field is null) throw new BadRequestException(Unknown(reader.GetString()!, type, path));
            reader.Read();
            var inner = type.Options.GetTypeInfo(field.PropertyType);
            if (reader.TokenType == JsonTokenType.StartObject && inner.Kind == JsonTypeInfoKind.Object)
                CheckFields(ref reader, inner, path + field.Name + ".");
            else
                reader.Skip();
        }
    }

    private static string Unknown(string name, JsonTypeInfo type, string path)
    {
        var known = type.Properties.Select(p => p.Name).ToList();
        var near = Spelling.Nearest(name, known);
        var where = path.Length == 0 ? "this call's body" : $"\"{path.TrimEnd('.')}\"";
        return $"unknown field \"{path}{name}\"{(near is null ? "" : $" (did you mean \"{path}{near}\"?)")}; the fields of {where} are: {string.Join(", ", known)}";
    }

    /// <summary>A JsonException as the client should read it: the field and what it must be, or where the JSON breaks.</summary>
    private static string Describe(JsonException e, JsonTypeInfo type)
    {
        if (e.Path is { Length: > 1 } path && FieldAt(type, path) is { } field && e.Message.Contains("could not be converted", StringComparison.Ordinal))
            return $"field \"{path[2..]}\" must be {Expected(field.Options.GetTypeInfo(field.PropertyType))}";
        if (e.Message.Contains("could not be converted", StringComparison.Ordinal))
            return e.Path is null or "$" ? "request body must be a JSON object" : $"request body: the value at {e.Path} has the wrong type for this call";
        var at = e.LineNumber is { } line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})" : "";
        return $"request body is not valid JSON{at}: {e.Message.Split(" Path:")[0]}";
    }

    /// <summary>The field a path like $.network_policy.allow[0] ends in, or null.</summary>
    private static JsonPropertyInfo? FieldAt(JsonTypeInfo type, string path)
    {
        JsonPropertyInfo? field = null;
        foreach (var part in path[2..].Split('.'))
        {
            var name = part.Split('[')[0];
            field = type.Properties.FirstOrDefault(p => p.Name == name);
            if (field is null) return null;
            type = type.Options.GetTypeInfo(field.PropertyType);
        }
        return field;
    }

    private static string Expected(JsonTypeInfo type)
    {
        var t = Nullable.GetUnderlyingType(type.Type) ?? type.Type;
        if (t == typeof(string)) return "a string";
        if (t == typeof(bool)) return "true or false";
        if (t == typeof(int) || t == typeof(long)) return "a whole number";
        if (t == typeof(double) || t == typeof(float) || t == typeof(decimal)) return "a number";
        return type.Kind switch
        {
            JsonTypeInfoKind.Dictionary => "an object of strings",
            JsonTypeInfoKind.Enumerable => "an array",
            _ => "an object",
        };
    }
}
