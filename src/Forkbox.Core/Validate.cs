using System.Numerics;
using Forkbox.Core.Errors;

namespace Forkbox.Core;

/// <summary>Checks on request fields; each failure is a 400 whose message names the field and what to send.</summary>
public static class Validate
{
    public const int MaxMetadataEntries = 64;
    public const int MaxValueLength = 4096;

    public static T Range<T>(T value, T min, T max, string field) where T : INumber<T>
    {
        if (T.IsNaN(value) || value < min || value > max)
            throw new BadRequestException($"{field} must be between {min} and {max}, got {value}");
        return value;
    }

    /// <summary>Environment variables: names without '=' or NUL, values without NUL.</summary>
    public static Dictionary<string, string>? Env(Dictionary<string, string>? env, string field)
    {
        if (env is null) return null;
        if (env.Count > 1024) throw new BadRequestException($"{field} has {env.Count} entries; at most 1024 are allowed");
        foreach (var (k, v) in env)
        {
            if (k.Length == 0 || k.Contains('=') || k.Contains('\0'))
                throw new BadRequestException($"{field}: '{k}' is not a valid variable name (non-empty, no '=' or NUL)");
            if (v is null || v.Contains('\0'))
                throw new BadRequestException($"{field}: the value of '{k}' must be a string without NUL");
        }
        return env;
    }

    public static Dictionary<string, string> Metadata(Dictionary<string, string>? metadata)
    {
        if (metadata is null) return new();
        if (metadata.Count > MaxMetadataEntries)
            throw new BadRequestException($"metadata has {metadata.Count} entries; at most {MaxMetadataEntries} are allowed");
        foreach (var (k, v) in metadata)
            if (k.Length is 0 or > 256 || v is null || v.Length > MaxValueLength)
                throw new BadRequestException($"metadata '{k}': keys are 1–256 characters, values strings of at most {MaxValueLength}");
        return new Dictionary<string, string>(metadata);
    }

    /// <summary>A sandbox name: 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit.</summary>
    /// <summary>1 to 32 of a-z, 0-9 and '-', not starting with '-': host ids and region names, safe in ids, paths and Redis keys.</summary>
    public static bool IsSlug(ReadOnlySpan<char> value)
    {
        if (value.IsEmpty || value.Length > 32 || value[0] == '-') return false;
        foreach (var c in value)
            if (!char.IsAsciiLetterLower(c) && !char.IsAsciiDigit(c) && c != '-')
                return false;
        return true;
    }

    public static string Name(string name, string field)
    {
        if (name.Length is 0 or > 128 || !char.IsAsciiLetterOrDigit(name[0]) ||
            !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw new BadRequestException($"{field} '{name}' is not a valid name: 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit");
        return name;
    }

    /// <summary>
    /// A path inside a sandbox. Relative paths are taken from /root. ".." is refused outright: it
    /// could not leave the sandbox (the agent resolves paths inside its own root), but a client
    /// that sends it almost always has a bug worth hearing about.
    /// </summary>
    public static string SandboxPath(string? path, string field)
    {
        if (string.IsNullOrEmpty(path))
            throw new BadRequestException($"{field} is required: a path inside the sandbox, e.g. /root/data.csv");
        if (path.Length > 4096 || path.Contains('\0'))
            throw new BadRequestException($"{field} must be at most 4096 characters and contain no NUL");
        foreach (var part in path.Split('/'))
            if (part == "..")
                throw new BadRequestException($"{field} '{path}' must not contain '..'; give the path from / or from /root");
        return path.StartsWith('/') ? path : "/root/" + path;
    }
}
