using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Forkbox.Linux.Network;

/// <summary>An IPv4 network, "10.201.0.0/16"; a bare address is a /32.</summary>
public readonly record struct Ipv4Cidr(uint Network, int Prefix)
{
    public uint Mask => Prefix == 0 ? 0 : uint.MaxValue << (32 - Prefix);

    /// <summary>How many addresses the network spans.</summary>
    public long Size => 1L << (32 - Prefix);

    public static bool TryParse(string? text, out Ipv4Cidr cidr)
    {
        cidr = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var parts = text.Trim().Split('/');
        if (parts.Length > 2 || !IPAddress.TryParse(parts[0], out var ip) || ip.AddressFamily != AddressFamily.InterNetwork) return false;
        var prefix = 32;
        if (parts.Length == 2 && (!int.TryParse(parts[1], out prefix) || prefix is < 0 or > 32)) return false;
        var value = ToUInt32(ip);
        var mask = prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);
        cidr = new Ipv4Cidr(value & mask, prefix);
        return true;
    }

    public static Ipv4Cidr Parse(string text) =>
        TryParse(text, out var c) ? c : throw new FormatException($"'{text}' is not an IPv4 address or network (a.b.c.d or a.b.c.d/n)");

    public bool Contains(IPAddress ip) => ip.AddressFamily == AddressFamily.InterNetwork && (ToUInt32(ip) & Mask) == Network;

    public bool Overlaps(Ipv4Cidr other)
    {
        var mask = Prefix < other.Prefix ? Mask : other.Mask;
        return (Network & mask) == (other.Network & mask);
    }

    /// <summary>The address at <paramref name="offset"/> from the start of the network.</summary>
    public IPAddress At(long offset) => FromUInt32((uint)(Network + offset));

    public static uint ToUInt32(IPAddress ip)
    {
        Span<byte> b = stackalloc byte[4];
        ip.TryWriteBytes(b, out _);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    public static IPAddress FromUInt32(uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        return new IPAddress(b);
    }

    public override string ToString() => $"{FromUInt32(Network)}/{Prefix}";
}
