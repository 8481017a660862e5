using System.Net;

namespace Forkbox.Linux.Network;

/// <summary>
/// A sandbox's way out: a veth pair whose host end (PREFIX + index) carries the gateway address and a
/// /32 route to the sandbox, and whose other end is eth0 inside the sandbox's network namespace with the
/// sandbox's address and a default route via the gateway. What the sandbox receives is shaped by a tbf
/// qdisc on the host end, where the sandbox cannot change it (what it sends is policed by
/// <see cref="EgressFirewall"/>: tc policing needs act_police, which not every kernel has). Deleting the host
/// end deletes the pair, its routes and its qdiscs; <see cref="DisposeAsync"/> does that.
/// </summary>
public sealed class SandboxLink : IAsyncDisposable
{
    private int _disposed;

    private SandboxLink(string hostName, IPAddress address)
    {
        HostName = hostName;
        Address = address;
    }

    /// <summary>The host end's interface name.</summary>
    public string HostName { get; }

    public IPAddress Address { get; }

    /// <summary>Makes the pair into the network namespace of <paramref name="pid"/> and configures both ends.</summary>
    public static async Task<SandboxLink> AttachAsync(int pid, string hostName, IPAddress address, IPAddress gateway, LinkLimits limits)
    {
        var link = new SandboxLink(hostName, address);
        try
        {
            await NetTool.RunBatchAsync("ip",
                $"link add {hostName} type veth peer name eth0 netns {pid}\n" +
                $"addr add {gateway}/32 dev {hostName}\n" +
                $"link set {hostName} up\n" +
                $"route add {address}/32 dev {hostName}\n").ConfigureAwait(false);
            if (limits.RateMbit > 0)
            {
                var rate = $"{limits.RateMbit}mbit";
                var burst = Math.Max(32, limits.RateMbit * 4); // KB: ~30 ms at the rate, at least 32 KB
                await NetTool.RunBatchAsync("tc", $"qdisc add dev {hostName} root tbf rate {rate} burst {burst}kb latency 50ms\n").ConfigureAwait(false);
            }
            await NetTool.RunBatchAsync("ip",
                $"addr add {address}/32 dev eth0\n" +
                "link set eth0 up\n" +
                $"route add {gateway} dev eth0\n" +
                $"route add default via {gateway} dev eth0\n", netnsPid: pid).ConfigureAwait(false);
            return link;
        }
        catch
        {
            await link.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Bytes the sandbox sent (received by the host end).</summary>
    public long SentBytes => ReadCounter("rx_bytes");

    /// <summary>Bytes the sandbox received (sent by the host end).</summary>
    public long ReceivedBytes => ReadCounter("tx_bytes");

    private long ReadCounter(string name)
    {
        try
        {
            return long.Parse(File.ReadAllText($"/sys/class/net/{HostName}/statistics/{name}"));
        }
        catch (IOException)
        {
            return 0; // the link is gone
        }
    }

    /// <summary>Whether a link of this name exists on the host.</summary>
    public static bool Exists(string hostName) => Directory.Exists($"/sys/class/net/{hostName}");

    /// <summary>Host ends named with <paramref name="prefix"/>: those of this server's sandboxes, or a crashed run's.</summary>
    public static IReadOnlyList<string> List(string prefix) =>
        Directory.Exists("/sys/class/net")
            ? Directory.GetFileSystemEntries("/sys/class/net").Select(p => Path.GetFileName(p)).Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToList()
            : [];

    /// <summary>Deletes links left by a run of this server that did not shut down.</summary>
    public static async Task<int> RemoveStaleAsync(string prefix)
    {
        var stale = List(prefix);
        if (stale.Count > 0)
            await NetTool.RunBatchAsync("ip", string.Concat(stale.Select(n => $"link del {n}\n")), force: true).ConfigureAwait(false);
        return stale.Count;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        // Gone already when the sandbox's namespace died first (its end took the pair with it),
        // which may also happen between the check and the delete.
        if (!Exists(HostName)) return;
        try
        {
            await NetTool.RunBatchAsync("ip", $"link del {HostName}\n", force: true).ConfigureAwait(false);
        }
        catch (InvalidOperationException) when (!Exists(HostName))
        {
            // went with its namespace meanwhile: nothing left to remove
        }
    }
}
