using System.Net;

namespace Forkbox.Linux.Network;

/// <summary>
/// The sandbox addresses of one server: a private network (ServerOptions.Network.Subnet) whose first
/// host address is the gateway every sandbox routes through, the rest handed out one per sandbox
/// with egress. An address is taken by the sandbox's <see cref="SandboxLink"/> and given back when it goes.
/// </summary>
public sealed class AddressPool
{
    private readonly Lock _lock = new();
    private readonly bool[] _used;
    private int _next;

    public AddressPool(Ipv4Cidr subnet)
    {
        if (subnet.Prefix > 29) throw new ArgumentException($"network_subnet {subnet} is too small: use a /29 or larger");
        Subnet = subnet;
        Gateway = subnet.At(1);
        // .0 is the network, .1 the gateway, the last the broadcast address.
        _used = new bool[Math.Min(subnet.Size, 1 << 20)];
        _used[0] = _used[1] = true;
        _used[^1] = true;
        _next = 2;
    }

    public Ipv4Cidr Subnet { get; }

    /// <summary>The host's address on every sandbox link: each sandbox's default route.</summary>
    public IPAddress Gateway { get; }

    /// <summary>An unused address, or null when all are taken. Handed out round-robin, so a freed one is not reused at once.</summary>
    public IPAddress? Take()
    {
        lock (_lock)
        {
            for (var n = 0; n < _used.Length; n++)
            {
                var i = (_next + n) % _used.Length;
                if (_used[i]) continue;
                _used[i] = true;
                _next = i + 1;
                return Subnet.At(i);
            }
            return null;
        }
    }

    public void Release(IPAddress address)
    {
        var i = Ipv4Cidr.ToUInt32(address) - Subnet.Network;
        lock (_lock)
            if (i > 1 && i < _used.Length - 1) _used[i] = false;
    }
}
