using System.Net.Sockets;

namespace Forkbox.Testing;

/// <summary>A connected pair of Unix stream sockets: hostd's end of a control channel and the agent's, in one process.</summary>
internal static class UnixSocketPair
{
    public static (Socket Host, Socket Agent) Connect()
    {
        var path = Path.Combine(Path.GetTempPath(), $"forkbox-pair-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var host = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        host.Connect(new UnixDomainSocketEndPoint(path));
        var agent = listener.Accept();
        File.Delete(path);
        return (host, agent);
    }
}
