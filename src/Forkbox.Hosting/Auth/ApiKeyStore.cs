using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Forkbox.Hosting.Auth;

/// <summary>
/// API keys, stored as SHA-256 hashes in DATA/keys.json (mode 0600). The plain key is shown once,
/// when it is created. The server notices keys added or taken out while it runs (the file is re-read
/// when it changes). An edge reads the same format, where each key may also name its tier.
/// The store fails closed: a file that cannot be read or parsed at start is an error naming it; one
/// that becomes unreadable, malformed, empty or missing later leaves the last good keys in force
/// (with one error logged per change), so authentication never goes from on to off while running.
/// </summary>
public sealed partial class ApiKeyStore
{
    private readonly string _path;
    private readonly ILogger _log;
    private readonly long _recheckMs;
    private readonly Lock _refresh = new();
    private Dictionary<string, ApiKey> _hashes; // sha256 → key; replaced whole, never emptied once it has keys
    private (DateTime Mtime, long Length) _seen; // the version of the file last read, good or bad
    private long _checkedAt;

    /// <summary>Reads the keys file (none yet is no keys); throws naming the file if it cannot be read or parsed.</summary>
    /// <param name="recheck">How often, at most, requests look at the file again (1 s unless a test says otherwise).</param>
    public ApiKeyStore(string path, ILogger? log = null, TimeSpan? recheck = null)
    {
        _path = path;
        _log = log ?? NullLogger.Instance;
        _recheckMs = (long)(recheck ?? TimeSpan.FromSeconds(1)).TotalMilliseconds;
        _seen = Stamp(path);
        if (!TryRead(path, out var keys, out var error))
            throw new InvalidOperationException($"keys file {path} cannot be used: {error}. Fix it or move it away; " +
                                                "it is the JSON list that `forkbox keys create` writes");
        _hashes = Index(keys);
        _checkedAt = Environment.TickCount64;
    }

    /// <summary>Whether any key exists; with none, a loopback-only server runs without auth. Once true, stays true.</summary>
    public bool Enabled
    {
        get
        {
            Refresh();
            return Volatile.Read(ref _hashes).Count > 0;
        }
    }

    /// <summary>The keys in force (read again at most once a second, like every lookup).</summary>
    public IReadOnlyCollection<ApiKey> Keys
    {
        get
        {
            Refresh();
            return Volatile.Read(ref _hashes).Values;
        }
    }

    /// <summary>
    /// Raised with the new keys, on the thread of the lookup that noticed the change, just before
    /// they are put in force: no request is answered with a new key before the handlers ran.
    /// </summary>
    public event Action<IReadOnlyCollection<ApiKey>>? Changed;

    public bool Verify(string key) => Owner(key) is not null;

    /// <summary>The key a request carries: 'Authorization: Bearer KEY', else 'X-API-Key: KEY'; empty when none.</summary>
    public static string KeyOf(Microsoft.AspNetCore.Http.HttpRequest request)
    {
        var auth = request.Headers.Authorization.ToString();
        return auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? auth[7..].Trim() : request.Headers["X-API-Key"].ToString();
    }

    /// <summary>The name the key was created with (the owner of the sandboxes it creates), or null for an unknown key.</summary>
    public string? Owner(string key) => Find(key)?.Name;

    /// <summary>The key's name, tier and role, or null for an unknown key.</summary>
    public ApiKey? Find(string key)
    {
        Refresh();
        var hash = Encoding.ASCII.GetBytes(Hash(key));
        ApiKey? found = null;
        foreach (var (h, k) in Volatile.Read(ref _hashes))
            if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(h), hash)) found = k;
        return found;
    }

    /// <summary>
    /// Makes a new key, stores its hash, and returns the key (the only time it is shown). A name
    /// already in the file is refused: the name is the owner of the key's sandboxes, so a second
    /// key of that name would reach the first one's.
    /// </summary>
    /// <param name="adoptLocal">The key takes over the sandboxes made without keys (owner "local"): the server hands them over when it notices the key.</param>
    public string Create(string name, string? tier = null, bool admin = false, bool adoptLocal = false)
    {
        var keys = ReadForChange("adding a key");
        foreach (var k in keys)
            if (k is JsonObject o && TryString(o, "name", out var taken) && taken == name)
                throw new InvalidOperationException($"a key named '{name}' already exists in {_path} (prefix {Prefix(o)}); " +
                                                    $"choose another --name, or revoke it first with `forkbox keys revoke {name}`");
        var key = "fbx_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        keys.Add(new JsonObject
        {
            ["name"] = name,
            ["sha256"] = Hash(key),
            ["prefix"] = key[..8],
            ["tier"] = tier,
            ["role"] = admin ? ApiKey.AdminRole : ApiKey.UserRole,
            ["created_at"] = DateTimeOffset.UtcNow.ToString("O"),
        });
        if (adoptLocal) keys[^1]!["adopt_local"] = true;
        Write(keys);
        return key;
    }

    /// <summary>The keys in the file as `keys list` shows them (never a hash); throws naming the file if it cannot be read.</summary>
    public IReadOnlyList<ApiKeyListing> List() => Listing(ReadForChange("listing keys"));

    private static List<ApiKeyListing> Listing(JsonArray keys)
    {
        var listing = new List<ApiKeyListing>();
        foreach (var k in keys)
        {
            var o = (JsonObject)k!;
            TryString(o, "name", out var name);
            TryString(o, "tier", out var tier);
            TryString(o, "role", out var role);
            TryString(o, "created_at", out var created);
            listing.Add(new ApiKeyListing(name ?? "", Prefix(o), tier, role ?? ApiKey.UserRole, created));
        }
        return listing;
    }

    /// <summary>
    /// Takes out the key with this name (or prefix) and returns its listing; a running server stops
    /// taking it within a second. Refuses a name that matches no key or several, and the last key:
    /// a running server keeps its last keys when the file empties (auth never turns off while it runs).
    /// </summary>
    public ApiKeyListing Revoke(string nameOrPrefix)
    {
        var keys = ReadForChange("revoking a key");
        var all = Listing(keys);
        var matches = Enumerable.Range(0, all.Count).Where(i => all[i].Name == nameOrPrefix || all[i].Prefix == nameOrPrefix).ToList();
        if (matches.Count == 0)
            throw new InvalidOperationException($"no key named '{nameOrPrefix}' (or with that prefix) in {_path}; `forkbox keys list` shows them");
        if (matches.Count > 1)
            throw new InvalidOperationException($"{matches.Count} keys match '{nameOrPrefix}' in {_path} (prefixes " +
                                                $"{string.Join(", ", matches.Select(i => all[i].Prefix))}); revoke one by its prefix");
        if (all.Count == 1)
            throw new InvalidOperationException($"'{nameOrPrefix}' is the only key in {_path}: a running server keeps its last keys when none are left " +
                                                "(auth never turns off while it runs). Create another key first, or stop the server and remove the file");
        keys.RemoveAt(matches[0]);
        Write(keys);
        return all[matches[0]];
    }

    private JsonArray ReadForChange(string what)
    {
        if (!TryReadArray(_path, out var keys, out var error) || !TryParse(keys, out _, out error))
            throw new InvalidOperationException($"keys file {_path} cannot be used: {error}. Fix it or move it away before {what}");
        return keys;
    }

    private void Write(JsonArray keys)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        var tmp = _path + ".tmp";
        File.WriteAllText(tmp, keys.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, _path, overwrite: true);
    }

    /// <summary>The key's first eight characters as stored (older files have none: then its hash's first eight, as its name defaults to).</summary>
    private static string Prefix(JsonObject o) =>
        TryString(o, "prefix", out var p) && p is not null ? p : TryString(o, "sha256", out var h) && h is { Length: >= 8 } ? h[..8] : "";

    private static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    private void Refresh()
    {
        var now = Environment.TickCount64;
        if (now - Interlocked.Read(ref _checkedAt) < _recheckMs) return;
        // One request reads the file; the others carry on with the keys in force.
        if (!_refresh.TryEnter()) return;
        try
        {
            Interlocked.Exchange(ref _checkedAt, now);
            var stamp = Stamp(_path);
            if (stamp == _seen) return;
            _seen = stamp; // logged once per change below, not once per request
            var held = Volatile.Read(ref _hashes).Count;
            if (!TryRead(_path, out var keys, out var error))
                LogKeysUnusable(_log, _path, error, held);
            else if (keys.Count == 0 && held > 0)
                LogKeysEmptied(_log, _path, held);
            else
            {
                var index = Index(keys);
                try
                {
                    Changed?.Invoke(index.Values);
                }
                catch (Exception e)
                {
                    LogChangeHandlerFailed(_log, _path, e);
                }
                Volatile.Write(ref _hashes, index);
            }
        }
        finally
        {
            _refresh.Exit();
        }
    }

    /// <summary>What tells one version of the file from another: its mtime and length (a directory or nothing there has its own).</summary>
    private static (DateTime, long) Stamp(string path)
    {
        var file = new FileInfo(path);
        return (File.GetLastWriteTimeUtc(path), file.Exists ? file.Length : Directory.Exists(path) ? -1 : -2);
    }

    private static Dictionary<string, ApiKey> Index(List<(string Hash, ApiKey Key)> keys)
    {
        var hashes = new Dictionary<string, ApiKey>(StringComparer.Ordinal);
        foreach (var (h, k) in keys) hashes[h] = k;
        return hashes;
    }

    /// <summary>The keys in the file: none when there is no file or it is empty; false with the reason when it is not a valid keys list.</summary>
    private static bool TryRead(string path, out List<(string Hash, ApiKey Key)> keys, out string error)
    {
        keys = [];
        return TryReadArray(path, out var array, out error) && TryParse(array, out keys, out error);
    }

    private static bool TryReadArray(string path, out JsonArray array, out string error)
    {
        array = [];
        error = "";
        string text;
        try
        {
            if (!File.Exists(path) && !Directory.Exists(path)) return true;
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = "it cannot be read (" + e.Message + ")";
            return false;
        }
        if (string.IsNullOrWhiteSpace(text)) return true;
        try
        {
            if (JsonNode.Parse(text) is JsonArray parsed)
            {
                array = parsed;
                return true;
            }
            error = "it is not a JSON list of keys";
        }
        catch (JsonException e)
        {
            error = "it is not valid JSON (" + e.Message + ")";
        }
        return false;
    }

    private static bool TryParse(JsonArray array, out List<(string Hash, ApiKey Key)> keys, out string error)
    {
        keys = [];
        error = "";
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject k
                || !TryString(k, "sha256", out var hash) || hash is not { Length: 64 }
                || !TryString(k, "name", out var name) || !TryString(k, "tier", out var tier) || !TryString(k, "role", out var role))
            {
                error = $"key {i + 1} is not an object with a \"sha256\" of 64 hex digits and string \"name\", \"tier\" and \"role\"";
                return false;
            }
            if (role is not (null or ApiKey.UserRole or ApiKey.AdminRole))
            {
                error = $"key {i + 1} has role \"{role}\"; a role is \"{ApiKey.AdminRole}\" or \"{ApiKey.UserRole}\" (or none: an ordinary key)";
                return false;
            }
            if (k["adopt_local"] is { } adopt && adopt.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
            {
                error = $"key {i + 1} has an \"adopt_local\" that is not true or false";
                return false;
            }
            keys.Add((hash, new ApiKey(name ?? hash[..8], tier, role == ApiKey.AdminRole, k["adopt_local"]?.GetValue<bool>() == true)));
        }
        return true;
    }

    /// <summary>A field that is absent, null or a string; false for any other kind of value.</summary>
    private static bool TryString(JsonObject o, string field, out string? value)
    {
        value = null;
        if (o[field] is not { } node) return true;
        if (node.GetValueKind() != JsonValueKind.String) return false;
        value = node.GetValue<string>();
        return true;
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "keys file {Path} cannot be used: {Error}; keeping the {Count} keys read before (auth stays on)")]
    private static partial void LogKeysUnusable(ILogger log, string path, string error, int count);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Error, Message = "keys file {Path}: acting on its new keys failed; they are in force all the same")]
    private static partial void LogChangeHandlerFailed(ILogger log, string path, Exception error);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "keys file {Path} is empty or gone; keeping the {Count} keys read before: auth never turns off " +
        "while the server runs (to run without keys, stop it, remove the file and start it on a loopback address)")]
    private static partial void LogKeysEmptied(ILogger log, string path, int count);
}
