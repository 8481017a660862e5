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

    /// <summary>Whether a value is "name:port" or "address:port", as a Redis endpoint is given.</summary>
    public static bool IsHostPort(string value)
    {
        var colon = value.LastIndexOf(':');
        return colon > 0 && int.TryParse(value.AsSpan(colon + 1), out var port) && port is > 0 and <= 65535
               && Uri.CheckHostName(value[..colon].Trim('[', ']')) != UriHostNameType.Unknown;
    }

    /// <summary>Whether the address listens on every interface (0.0.0.0 or ::), which says nothing about where to reach it.</summary>
    public static bool IsWildcard(string value) =>
        TryParse(value, out var ep) && (ep.Address.Equals(IPAddress.Any) || ep.Address.Equals(IPAddress.IPv6Any));

    public static bool IsLoopback(string value) => TryParse(value, out var ep) && IPAddress.IsLoopback(ep.Address);
}
