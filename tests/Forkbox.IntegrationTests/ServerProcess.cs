using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Forkbox.Client;

namespace Forkbox.IntegrationTests;

/// <summary>
/// `forkbox serve` as a separate process on a free loopback port, for the tests that kill a
/// server for real (kill -9) or run several hosts of a cluster.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _log;

    private ServerProcess(Process process, int port, ConcurrentQueue<string> log)
    {
        _process = process;
        _log = log;
        Port = port;
        Client = new ForkboxClient(Url);
    }

    public int Port { get; }
    public string Url => $"http://127.0.0.1:{Port}";
    public ForkboxClient Client { get; }

    /// <summary>Starts a server and waits until it answers /v1/healthz. <paramref name="env"/> adds FORKBOX_* settings.</summary>
    public static async Task<ServerProcess> StartAsync(string dataDir, string? fault = null, IEnumerable<string>? args = null,
        IReadOnlyDictionary<string, string>? env = null, string label = "serve")
    {
        var port = FreePort();
        var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "forkbox.dll"), "serve",
            "--data-dir", dataDir, "--listen", $"127.0.0.1:{port}", .. args ?? []])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["FORKBOX_POOLSIZE"] = "1";
        psi.Environment["FORKBOX_MAXSANDBOXES"] = "16";
        psi.Environment["FORKBOX_UIDBASE"] = (3_000_000_000L + Environment.ProcessId % 8 * 65_536L * 16).ToString();
        if (fault is not null) psi.Environment["FORKBOX_FAULT"] = fault;
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        var process = Process.Start(psi)!;
        var log = new ConcurrentQueue<string>();
        void Line(string? line)
        {
            if (line is null) return;
            log.Enqueue(line);
            Console.WriteLine(label + ": " + line);
        }
        process.OutputDataReceived += (_, e) => Line(e.Data);
        process.ErrorDataReceived += (_, e) => Line(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException($"forkbox serve exited with {process.ExitCode} at start-up");
            try
            {
                if ((await http.GetAsync($"http://127.0.0.1:{port}/v1/healthz")).StatusCode == HttpStatusCode.OK) break;
            }
            catch (HttpRequestException)
            {
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("forkbox serve did not answer within 60 s");
            await Task.Delay(100);
        }
        return new ServerProcess(process, port, log);
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public int Pid => _process.Id;

    /// <summary>SIGKILL: the server gets no chance to clean up or to leave its cluster.</summary>
    public void Kill() => _process.Kill();

    public Task WaitForExitAsync() => _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));

    /// <summary>SIGTERM, as a service manager stops it.</summary>
    public void Terminate() => Forkbox.Linux.Processes.Signal(_process.Id, 15);

    public bool HasExited => _process.HasExited;

    /// <summary>Whether it exited within <paramref name="limit"/> (its output read to the end when it did).</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan limit)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(limit);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Every line the server has written to stdout and stderr so far.</summary>
    public IReadOnlyList<string> Log => _log.ToArray();

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Forkbox.Linux.Processes.Signal(_process.Id, 15);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }
        _process.Dispose();
    }
}
