using System.Buffers.Binary;
using System.Net.Sockets;
using Forkbox.Host.Agents;
using Forkbox.Testing;

namespace Forkbox.Benchmarks;

/// <summary>
/// The agent's end of a control socket, in process: for every request frame it reads, it writes
/// one fixed answer (for exec: an "out" frame and an "exit" frame). It runs on its own thread with
/// blocking calls on buffers made once, so that what the benchmark counts is hostd's side.
/// </summary>
internal sealed class FakeAgent : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _answer;
    private readonly Thread _thread;

    private FakeAgent(Socket socket, byte[] answer)
    {
        _socket = socket;
        _answer = answer;
        _thread = new Thread(Serve) { IsBackground = true, Name = "fake agent" };
        _thread.Start();
    }

    /// <summary>hostd's connection to a new fake agent over a connected pair of Unix stream sockets.</summary>
    public static (AgentConnection Host, FakeAgent Agent) Start(byte[] answer)
    {
        var (host, agent) = UnixSocketPair.Connect();
        return (new AgentConnection(host), new FakeAgent(agent, answer));
    }

    private void Serve()
    {
        var prefix = new byte[8];
        var body = new byte[64 << 10];
        try
        {
            while (Receive(prefix, 8))
            {
                var length = (long)BinaryPrimitives.ReadUInt32BigEndian(prefix) + BinaryPrimitives.ReadUInt32BigEndian(prefix.AsSpan(4));
                while (length > 0)
                {
                    var chunk = (int)Math.Min(length, body.Length);
                    if (!Receive(body, chunk)) return;
                    length -= chunk;
                }
                _socket.Send(_answer);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // hostd's end closed: the benchmark is over.
        }
    }

    private bool Receive(byte[] buffer, int count)
    {
        for (var got = 0; got < count;)
        {
            var n = _socket.Receive(buffer, got, count - got, SocketFlags.None);
            if (n == 0) return false;
            got += n;
        }
        return true;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Shutdown(SocketShutdown.Both);
        _socket.Dispose();
        _thread.Join();
        return ValueTask.CompletedTask;
    }
}
