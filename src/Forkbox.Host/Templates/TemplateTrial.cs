using System.Text;
using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Options;
using Forkbox.Core.Wire;
using Forkbox.Host.Sandboxes;
using Forkbox.Hosting;
using Forkbox.Hosting.Auth;
using Forkbox.Linux.Network;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Templates;

/// <summary>
/// A template's first run, before its build calls it ready: a throwaway server whose data
/// directory is the build's staging directory (where the template already sits as
/// templates/NAME) starts the template's zygote, creates a sandbox and runs <c>print(1)</c>. A root
/// that cannot start (a library missing, a mount target replaced by a symlink) fails the build with
/// the zygote's own error, instead of every create from it failing later.
/// </summary>
internal static class TemplateTrial
{
    public static async Task RunAsync(ServerOptions options, string dataDir, string name, Action<string> progress, CancellationToken ct)
    {
        progress($"trial: starting template '{name}' and running print(1) in a sandbox");
        var trial = TrialOptions(options, dataDir);
        // Its API (on a loopback port while the trial runs) takes a key nobody is given: the trial
        // itself calls the manager directly.
        new ApiKeyStore(trial.KeysFile).Create("template-trial");
        await using var server = await HostServer.StartAsync(trial,
            logging => logging.ClearProviders().SetMinimumLevel(LogLevel.Warning).AddProvider(new ProgressLogger(progress)), ct).ConfigureAwait(false);
        var sb = await server.Sandboxes.CreateAsync(new CreateSandboxRequest { Template = name }, Owners.Local, ct).ConfigureAwait(false);
        var output = new OutputSink();
        await server.Sandboxes.ExecAsync(sb, new ExecRequest { Code = "print(1)", TimeoutS = 30 }, output, ct).ConfigureAwait(false);
        if (output.ExitCode != 0 || output.Text.ToString() != "1\n")
            throw new ExecutorException($"template '{name}' started, but print(1) in it exited {output.ExitCode} with: {output.Text.ToString().Trim()}");
        await server.Sandboxes.DeleteAsync(sb.Id, "template trial done").ConfigureAwait(false);
    }

    /// <summary>
    /// The build's server options on the staging directory, with nothing shared with a server
    /// running on the real one: no pool, uids past (or before) its range, the last /29 of its
    /// subnet (whose addresses its sandboxes are given last), no cluster, no storage image
    /// (the staging directory's own filesystem, whatever it is).
    /// </summary>
    private static ServerOptions TrialOptions(ServerOptions options, string dataDir)
    {
        const int slots = 2;
        var above = options.Isolation.UidBase + (long)options.Limits.MaxSandboxes * 65_536;
        var uidBase = above + slots * 65_536L < uint.MaxValue ? above : options.Isolation.UidBase - slots * 65_536L;
        var subnet = Ipv4Cidr.Parse(options.Network.Subnet);
        var lastEight = new Ipv4Cidr((uint)(subnet.Network + subnet.Size - 8), 29);
        return options with
        {
            DataDir = dataDir,
            Listen = "127.0.0.1:0",
            Keys = Path.Combine(dataDir, "keys.json"),
            Limits = options.Limits with { MaxSandboxes = slots },
            Pool = new PoolOptions { Size = 0, EgressSize = 0 },
            Isolation = options.Isolation with { UidBase = uidBase },
            Network = options.Network with { Subnet = lastEight.ToString() },
            Storage = new StorageOptions(),
            Cluster = new ClusterOptions(),
        };
    }

    /// <summary>What the trial's cell printed, and how it exited.</summary>
    private sealed class OutputSink : IExecSink
    {
        public StringBuilder Text { get; } = new();
        public int ExitCode { get; private set; } = -1;

        public void Output(bool stderr, string line) => Text.Append(line).Append('\n');
        public void Result(JsonElement data, string kind, JsonElement? mime) { }
        public void Display(JsonElement mime) { }
        public void Error(string name, string value, string traceback) { }
        public void Exit(int code, bool timeout) => ExitCode = code;
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
    }

    /// <summary>
    /// What the template itself says (its zygote's stderr, logged as warnings) and the trial
    /// server's errors, as lines of the build's progress; not the server's warnings about its own
    /// set-up (storage, quotas), which are about the staging directory, not the template.
    /// </summary>
    private sealed class ProgressLogger(Action<string> progress) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) =>
            new Forwarder(progress, categoryName == typeof(Zygotes.ZygoteProcess).FullName ? LogLevel.Warning : LogLevel.Error);

        public void Dispose() { }

        private sealed class Forwarder(Action<string> progress, LogLevel from) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => logLevel >= from;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel)) progress("  trial: " + formatter(state, exception));
            }
        }
    }
}
