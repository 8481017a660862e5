using System.Security.Cryptography;

namespace Forkbox.Core;

/// <summary>Sandbox ids: "sbx_" and 32 lowercase hex digits (128 random bits).</summary>
public static class SandboxId
{
    public const string Prefix = "sbx_";

    public static string New()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Prefix + Convert.ToHexStringLower(bytes);
    }

    public static bool IsValid(string? id)
    {
        if (id is null || id.Length != Prefix.Length + 32 || !id.StartsWith(Prefix, StringComparison.Ordinal))
            return false;
        foreach (var c in id.AsSpan(Prefix.Length))
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
                return false;
        return true;
    }
}
