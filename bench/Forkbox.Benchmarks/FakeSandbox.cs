using Forkbox.Core;
using Forkbox.Core.Templates;
using Forkbox.Host;
using Forkbox.Host.Agents;
using Forkbox.Host.Sandboxes;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;
using Forkbox.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Forkbox.Benchmarks;

/// <summary>
/// A sandbox object around a connection to a <see cref="FakeAgent"/>, with no processes, cgroup or
/// layers behind it, and the real <see cref="SandboxCalls"/> to call into it: what the exec and
/// file paths do in hostd, without a kernel.
/// </summary>
internal sealed class FakeSandbox : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("forkbox-bench-").FullName;
    private readonly SandboxStore _store;
    private readonly FakeAgent _agent;

    public FakeSandbox(byte[] answer)
    {
        (var connection, _agent) = FakeAgent.Start(answer);
        _store = new SandboxStore(Path.Combine(_dir, "forkbox.db"));
        var registry = new SandboxRegistry();
        var records = new SandboxRecords(_store, registry, new SandboxLayers(_dir, StorageKind.Copy), new BackgroundWork(), _dir,
            NullLogger<SandboxRecords>.Instance);
        Calls = new SandboxCalls(new ServerOptions { DataDir = _dir }, records, new HostMetrics(), false, NullLogger<SandboxCalls>.Instance);
        Sandbox = KernelFreeSandbox.New("sbx_bench", connection, dir: _dir);
    }

    public SandboxCalls Calls { get; }

    public Sandbox Sandbox { get; }

    public async ValueTask DisposeAsync()
    {
        Sandbox.Agent.Abort();
        await _agent.DisposeAsync();
        await Sandbox.Agent.DisposeAsync();
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
