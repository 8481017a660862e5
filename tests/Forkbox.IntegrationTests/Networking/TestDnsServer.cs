using System.Diagnostics;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// A DNS server on one of a <see cref="TestNetworkHost"/>'s addresses, UDP port 53: it answers A
/// queries for the names it was given (class IN, one address each), an empty answer for their other
/// types (AAAA), and NXDOMAIN for any other name; the names it was asked are kept for the test. Made
/// by <see cref="TestNetworkHost.ServeDnsAsync"/>; disposing stops it. Enough for glibc's resolver, no more.
/// </summary>
public sealed class TestDnsServer : IDisposable
{
    // argv: address, then name=ip pairs. Prints "ready" once bound, then "query NAME" per question.
    private const string Script = """
        import socket, struct, sys
        records = dict(pair.split("=") for pair in sys.argv[2:])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], 53))
        print("ready", flush=True)
        while True:
            data, peer = s.recvfrom(4096)
            if len(data) < 12:
                continue
            ident, _, qdcount = struct.unpack("!HHH", data[:6])
            labels, i = [], 12
            while i < len(data) and data[i] != 0:
                labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
                i += 1 + data[i]
            qtype, qclass = struct.unpack("!HH", data[i + 1:i + 5])
            question = data[12:i + 5]
            name = ".".join(labels).lower()
            print("query " + name, flush=True)
            answers = b""
            if name not in records:
                flags = 0x8183  # response, recursion desired and available, NXDOMAIN
            else:
                flags = 0x8180
                if qtype == 1 and qclass == 1:
                    answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(records[name])
            count = 1 if answers else 0
            s.sendto(struct.pack("!HHHHHH", ident, flags, 1, count, 0, 0) + question + answers, peer)
        """;

    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _queries = [];

    private TestDnsServer(string netns, string address, IReadOnlyDictionary<string, string> records)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", netns, "/usr/bin/python3", "-c", Script, address })
            psi.ArgumentList.Add(a);
        foreach (var (name, ip) in records) psi.ArgumentList.Add($"{name.ToLowerInvariant()}={ip}");
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data == "ready") _ready.TrySetResult();
            else if (e.Data.StartsWith("query ", StringComparison.Ordinal))
                lock (_queries) _queries.Add(e.Data["query ".Length..]);
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) Console.Error.WriteLine("test dns server: " + e.Data);
        };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    internal static async Task<TestDnsServer> StartAsync(string netns, string address, IReadOnlyDictionary<string, string> records)
    {
        var server = new TestDnsServer(netns, address, records);
        try
        {
            await server._ready.Task.WaitAsync(TimeSpan.FromSeconds(15));
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>The names asked so far, lower case, in order.</summary>
    public IReadOnlyList<string> Queries
    {
        get
        {
            lock (_queries) return _queries.ToList();
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}
