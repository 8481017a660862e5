using System.Globalization;

namespace Forkbox.Hosting;

/// <summary>
/// A path under /v1/sandboxes/{id}/ports/{port}/: the sandbox, the port, the signed-URL token when
/// the path carries one (/_fbx/{expiry}-{signature}/), and the rest, which goes to the sandbox.
/// The token sits in the path, not the query, so relative links in a page served through a signed
/// URL keep it, and an edge that routes by the sandbox id in the path routes these too.
/// </summary>
public readonly record struct PortPath(string Id, int Port, long? Expiry, string? Signature, string Rest)
{
    public const string Prefix = "/v1/sandboxes/";
    public const string TokenSegment = "_fbx";

    public static bool TryParse(string? path, out PortPath result)
    {
        result = default;
        if (path is null || !path.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var parts = path[Prefix.Length..].Split('/', 4);
        // id, "ports", port, rest
        if (parts.Length < 3 || parts[1] != "ports" || !int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            return false;
        var rest = parts.Length == 4 ? "/" + parts[3] : "/";
        long? expiry = null;
        string? signature = null;
        if (rest.StartsWith("/" + TokenSegment + "/", StringComparison.Ordinal))
        {
            var tokenAndRest = rest[(TokenSegment.Length + 2)..].Split('/', 2);
            var token = tokenAndRest[0].Split('-', 2);
            if (token.Length != 2 || !long.TryParse(token[0], NumberStyles.None, CultureInfo.InvariantCulture, out var exp)) return false;
            expiry = exp;
            signature = token[1];
            rest = tokenAndRest.Length == 2 ? "/" + tokenAndRest[1] : "/";
        }
        result = new PortPath(parts[0], port, expiry, signature, rest);
        return true;
    }
}
