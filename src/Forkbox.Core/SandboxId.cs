using System.Security.Cryptography;

namespace Forkbox.Core;

/// <summary>
/// Sandbox ids: "sbx_", then, on a host that is part of a cluster, its host id and "_", then 32
/// lowercase hex digits (128 random bits): sbx_3f…, or sbx_eu-1_3f…. The host part is what lets an
/// edge send every call about a sandbox straight to the host that holds it, with no lookup table.
/// </summary>
public static class SandboxId
{
    public const string Prefix = "sbx_";
    private const int RandomHexDigits = 32;

    public static string New(string? host = null)
    {
        Span<byte> bytes = stackalloc byte[RandomHexDigits / 2];
        RandomNumberGenerator.Fill(bytes);
        var random = Convert.ToHexStringLower(bytes);
        return host is null ? Prefix + random : Prefix + host + "_" + random;
    }

    public static bool IsValid(string? id)
    {
        if (id is null || id.Length < Prefix.Length + RandomHexDigits || !id.StartsWith(Prefix, StringComparison.Ordinal))
            return false;
        foreach (var c in id.AsSpan(id.Length - RandomHexDigits))
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
                return false;
        var middle = id.AsSpan(Prefix.Length, id.Length - Prefix.Length - RandomHexDigits);
        return middle.IsEmpty || (middle[^1] == '_' && IsValidHostId(middle[..^1]));
    }

    /// <summary>The host part of a valid id, or null for an id made by a host outside a cluster (or an invalid id).</summary>
    public static string? HostOf(string id) =>
        IsValid(id) && id.Length > Prefix.Length + RandomHexDigits
            ? id.Substring(Prefix.Length, id.Length - Prefix.Length - RandomHexDigits - 1)
            : null;

    public static bool IsValidHostId(ReadOnlySpan<char> host) => Validate.IsSlug(host);
}
