using System.Net;
using System.Net.Sockets;

namespace Forkbox.Linux.Network;

/// <summary>
/// The host's DNS resolvers as a sandbox with egress can use them: the IPv4 <c>nameserver</c> lines
/// of the host's resolv.conf files (resolv.conf(5)), without loopback ones. A sandbox has a network
/// namespace of its own, so 127.0.0.53 (systemd-resolved's stub) or 127.0.0.1 (a local dnsmasq) would
/// be the sandbox's own loopback, where nothing answers; systemd-resolved writes the upstream servers
/// the stub uses to a second file, which is why several files are tried in turn.
/// </summary>
/// <param name="Servers">The resolvers, in the order the file lists them; empty when no file names one.</param>
/// <param name="Source">The file they came from, or null.</param>
/// <param name="Skipped">Nameservers passed over in every file read (loopback, IPv6), for the operator's log.</param>
public sealed record HostResolvers(IReadOnlyList<IPAddress> Servers, string? Source, IReadOnlyList<string> Skipped)
{
    /// <summary>
    /// Reads <paramref name="files"/> in order and keeps the usable nameservers of the first that has
    /// any. A missing or unreadable file is passed over (a host need not run systemd-resolved).
    /// </summary>
    public static HostResolvers Read(IEnumerable<string> files)
    {
        var skipped = new List<string>();
        foreach (var file in files)
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            var servers = Parse(lines, skipped);
            if (servers.Count > 0) return new HostResolvers(servers, file, skipped);
        }
        return new HostResolvers([], null, skipped);
    }

    /// <summary>The usable nameservers of one resolv.conf's lines; the unusable ones go to <paramref name="skipped"/>.</summary>
    public static List<IPAddress> Parse(IEnumerable<string> lines, List<string> skipped)
    {
        var servers = new List<IPAddress>();
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (!line.StartsWith("nameserver", StringComparison.Ordinal)) continue;
            var fields = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields is not ["nameserver", var value, ..]) continue;
            if (!IPAddress.TryParse(value, out var address)) continue;
            if (address.AddressFamily != AddressFamily.InterNetwork || IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any))
            {
                skipped.Add(value); // IPv6 is not offered to sandboxes
                continue;
            }
            if (!servers.Contains(address)) servers.Add(address);
        }
        return servers;
    }
}
