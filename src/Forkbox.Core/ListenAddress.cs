using System.Net;

namespace Forkbox.Core;

/// <summary>Parses "host:port" listen addresses and tells whether they are loopback-only.</summary>
public static class ListenAddress
{
    public static bool TryParse(string value, out IPEndPoint endpoint)
    {
        endpoint = null!;
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value.AsSpan(colon + 1), out var port) || port is < 0 or > 65535)
            return false;
        var host = value[..colon].Trim('[', ']');
        if (host == "localhost") host = "127.0.0.1";
        if (!IPAddress.TryParse(host, out var ip))
            return false;
        endpoint = new IPEndPoint(ip, port);
        return true;
    }

    public static bool IsLoopback(string value) => TryParse(value, out var ep) && IPAddress.IsLoopback(ep.Address);
}
