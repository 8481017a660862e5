using System.Collections.Concurrent;
using System.Diagnostics;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// A UDP listener on one of a <see cref="TestNetworkHost"/>'s addresses that records the payload of
/// every datagram that reaches it: what tells a test which packets from a sandbox got through. Made
/// by <see cref="TestNetworkHost.RecordUdpAsync"/>; disposing stops it.
/// </summary>
public sealed class UdpRecorder : IDisposable
{
    // Prints "ready" once bound, then one line per datagram.
    private const string Script = """
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], int(sys.argv[2])))
        print("ready", flush=True)
        while True:
            data, _ = s.recvfrom(65536)
            print(data.decode("utf-8", "replace"), flush=True)
        """;

    private readonly Process _process;
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _seen = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private UdpRecorder(string netns, string address, int port)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", netns, "/usr/bin/python3", "-c", Script, address, port.ToString() })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data == "ready") _ready.TrySetResult();
            else Arrival(e.Data).TrySetResult();
        };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    internal static async Task<UdpRecorder> StartAsync(string netns, string address, int port)
    {
        var recorder = new UdpRecorder(netns, address, port);
        try
        {
            await recorder._ready.Task.WaitAsync(TimeSpan.FromSeconds(15));
            return recorder;
        }
        catch
        {
            recorder.Dispose();
            throw;
        }
    }

    private TaskCompletionSource Arrival(string payload) =>
        _seen.GetOrAdd(payload, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>Whether a datagram carrying <paramref name="payload"/> has arrived.</summary>
    public bool Received(string payload) => _seen.TryGetValue(payload, out var tcs) && tcs.Task.IsCompleted;

    /// <summary>Completes when a datagram carrying <paramref name="payload"/> arrives; throws after <paramref name="timeout"/>.</summary>
    public Task WaitForAsync(string payload, TimeSpan timeout) => Arrival(payload).Task.WaitAsync(timeout);

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}
