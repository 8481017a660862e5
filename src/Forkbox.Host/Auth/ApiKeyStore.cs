using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Forkbox.Host.Auth;

/// <summary>
/// API keys, stored as SHA-256 hashes in DATA/keys.json (mode 0600). The plain key is shown once,
/// when it is created. The server notices keys added while it runs (the file is re-read when it changes).
/// An edge reads the same format, where each key may also name its tier.
/// </summary>
public sealed class ApiKeyStore(string path)
{
    private readonly Lock _lock = new();
    private Dictionary<string, ApiKey> _hashes = new(StringComparer.Ordinal); // sha256 → key
    private DateTime _loadedMtime = DateTime.MinValue;
    private long _checkedAt;

    /// <summary>Whether any key exists; with none, a loopback-only server runs without auth.</summary>
    public bool Enabled
    {
        get
        {
            Refresh();
            return _hashes.Count > 0;
        }
    }

    public bool Verify(string key) => Owner(key) is not null;

    /// <summary>The key a request carries: 'Authorization: Bearer KEY', else 'X-API-Key: KEY'; empty when none.</summary>
    public static string KeyOf(Microsoft.AspNetCore.Http.HttpRequest request)
    {
        var auth = request.Headers.Authorization.ToString();
        return auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? auth[7..].Trim() : request.Headers["X-API-Key"].ToString();
    }

    /// <summary>The name the key was created with (the owner of the sandboxes it creates), or null for an unknown key.</summary>
    public string? Owner(string key) => Find(key)?.Name;

    /// <summary>The key's name and tier, or null for an unknown key.</summary>
    public ApiKey? Find(string key)
    {
        Refresh();
        var hash = Encoding.ASCII.GetBytes(Hash(key));
        Dictionary<string, ApiKey> hashes;
        lock (_lock) hashes = _hashes;
        ApiKey? found = null;
        foreach (var (h, k) in hashes)
            if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(h), hash)) found = k;
        return found;
    }

    /// <summary>Makes a new key, stores its hash, and returns the key (the only time it is shown).</summary>
    public string Create(string name, string? tier = null)
    {
        var key = "fbx_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var keys = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path))?.AsArray() ?? [] : new JsonArray();
        keys.Add(new JsonObject
        {
            ["name"] = name,
            ["sha256"] = Hash(key),
            ["prefix"] = key[..8],
            ["tier"] = tier,
            ["created_at"] = DateTimeOffset.UtcNow.ToString("O"),
        });
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, keys.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, path, overwrite: true);
        return key;
    }

    private static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    private void Refresh()
    {
        var now = Environment.TickCount64;
        if (now - Interlocked.Read(ref _checkedAt) < 1000) return;
        Interlocked.Exchange(ref _checkedAt, now);
        var mtime = File.Exists(path) ? File.GetLastWriteTimeUtc(path) : DateTime.MinValue;
        if (mtime == _loadedMtime) return;
        var hashes = new Dictionary<string, ApiKey>(StringComparer.Ordinal);
        if (File.Exists(path))
            foreach (var k in JsonNode.Parse(File.ReadAllText(path))?.AsArray() ?? [])
                if (k?["sha256"]?.GetValue<string>() is { } h)
                    hashes[h] = new ApiKey(k["name"]?.GetValue<string>() ?? h[..8], k["tier"]?.GetValue<string>());
        lock (_lock)
        {
            _hashes = hashes;
            _loadedMtime = mtime;
        }
    }
}
