using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Forkbox.Hosting;

namespace Forkbox.Host.Ports;

/// <summary>
/// Signs and checks public URLs to a sandbox's port: HMAC-SHA256 over (sandbox id, port, expiry)
/// with a key made once in the data directory (mode 0600), so URLs survive a restart and rotate
/// when the file is deleted. A URL names one sandbox and one port; it grants nothing else.
/// </summary>
public sealed class PortUrlSigner
{
    private readonly byte[] _key;
    private readonly TimeProvider _time;

    public PortUrlSigner(string keyFile, TimeProvider time)
    {
        _time = time;
        if (File.Exists(keyFile))
        {
            _key = File.ReadAllBytes(keyFile);
            if (_key.Length < 32) throw new InvalidOperationException($"{keyFile} is not a port URL key (under 32 bytes); delete it and restart to make a new one");
            return;
        }
        _key = RandomNumberGenerator.GetBytes(32);
        using var f = new FileStream(keyFile, new FileStreamOptions
        {
            Mode = FileMode.CreateNew, Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        f.Write(_key);
    }

    /// <summary>The path (from /v1) of a URL to <paramref name="port"/> of sandbox <paramref name="id"/> that works until <paramref name="expiresAt"/>.</summary>
    public string SignedPath(string id, int port, DateTimeOffset expiresAt)
    {
        var exp = expiresAt.ToUnixTimeSeconds();
        return $"{PortPath.Prefix}{id}/ports/{port}/{PortPath.TokenSegment}/{exp}-{Signature(id, port, exp)}/";
    }

    /// <summary>Whether the path carries a signature for its own sandbox and port that has not expired.</summary>
    public bool IsValid(in PortPath path)
    {
        if (path.Expiry is not { } exp || path.Signature is not { } sig) return false;
        if (exp < _time.GetUtcNow().ToUnixTimeSeconds()) return false;
        var expected = Encoding.ASCII.GetBytes(Signature(path.Id, path.Port, exp));
        var given = Encoding.ASCII.GetBytes(sig);
        return CryptographicOperations.FixedTimeEquals(expected, given);
    }

    private string Signature(string id, int port, long exp)
    {
        var mac = HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{id}\n{port}\n{exp}")));
        return Convert.ToBase64String(mac).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
