using System.Diagnostics;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Networking;
using Forkbox.Host.Templates;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// POST /v1/sandboxes: validates what the caller asked for, takes a ready sandbox from the
/// template's warm pool (or has the factory make one while the caller waits), applies the caller's
/// limits, environment, policy, expiry and metadata, saves its record and lists it in the registry.
/// Depends on the factory only through <see cref="ISandboxFactory"/>, so that the benchmarks run it
/// against a factory without a kernel.
/// </summary>
public sealed partial class SandboxCreator(ServerOptions options, TemplateCatalog templates, SandboxRegistry registry, SandboxRecords records,
    SandboxCalls calls, SandboxEgress egress, SandboxPools pools, ISandboxFactory factory, DiskQuota? quota, HostMetrics metrics,
    ILogger<SandboxCreator> log)
{
    private readonly ILogger _log = log;

    /// <summary>
    /// A sandbox for the caller: a ready one from the template's warm pool when there is one
    /// (its limits, environment, expiry and metadata applied as it is taken), else one made now.
    /// </summary>
    public async Task<Sandbox> CreateAsync(CreateSandboxRequest req, string owner, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var template = templates.Get(req.Template);
        var limits = new SandboxLimits(
            Validate.Range(req.MemoryMb ?? options.Limits.DefaultMemoryMb, 32, options.Limits.MaxMemoryMb, "memory_mb"),
            Validate.Range(req.Cpus ?? options.Limits.DefaultCpus, 0.01, options.Limits.MaxCpus, "cpus"),
            options.Limits.PidsLimit);
        var timeout = Validate.Range(req.TimeoutS ?? options.Limits.DefaultTimeoutS, 1, options.Limits.MaxTimeoutS, "timeout_s");
        var env = Validate.Env(req.Env, "env");
        var metadata = Validate.Metadata(req.Metadata);
        var persistent = req.Persistent == true;
        if (!persistent && (req.Name ?? (object?)req.IdleTimeoutS ?? req.HibernateAfterS) is not null)
            throw new BadRequestException("name, idle_timeout_s and hibernate_after_s are for persistent sandboxes: add \"persistent\": true");
        var name = req.Name is null ? null : Validate.Name(req.Name, "name");
        var idle = req.IdleTimeoutS is { } i ? Validate.Range(i, 0.1, options.Limits.MaxTimeoutS, "idle_timeout_s") : (double?)null;
        var hibernateAfter = req.HibernateAfterS is { } h ? Validate.Range(h, 0.1, options.Limits.MaxTimeoutS * 365, "hibernate_after_s") : (double?)null;
        var diskMb = Validate.Range(req.DiskMb ?? options.Limits.DefaultDiskMb, 1, options.Limits.MaxDiskMb, "disk_mb");
        var withEgress = egress.Networking.Mode(req.Network, req.NetworkPolicy) == NetworkModes.Egress;
        var policy = withEgress ? await egress.Networking.ResolveAsync(req.NetworkPolicy, ct).ConfigureAwait(false) : null;

        var pool = pools.Get(template, withEgress);
        // The name is held from now on, so that two creates cannot both take it.
        var placeholder = SandboxRegistry.CreatingPrefix + SandboxId.New(options.Cluster.HostId);
        registry.ReserveName(owner, name, placeholder);
        Sandbox? sandbox;
        bool hit;
        try
        {
            sandbox = pool.TryTake();
            if (sandbox is not null)
            {
                try
                {
                    await ConfigureTakenAsync(sandbox, limits, env, policy, ct).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // A pooled sandbox that cannot be configured is discarded (it belongs to nobody now);
                    // the caller gets a new one, unless it has gone away.
                    LogPoolDiscard(sandbox.Id, e.Message);
                    _ = factory.DestroyAsync(sandbox);
                    sandbox = null;
                    if (e is OperationCanceledException) throw;
                }
            }
            hit = sandbox is not null;
            if (sandbox is null)
            {
                sandbox = await factory.SpawnAsync(template, limits, env, ct, egress: withEgress).ConfigureAwait(false);
                try
                {
                    if (policy is not null) await egress.AdmitAsync(sandbox, policy, ct).ConfigureAwait(false);
                }
                catch
                {
                    _ = factory.DestroyAsync(sandbox);
                    throw;
                }
            }
        }
        catch
        {
            registry.ReleaseName(owner, name, placeholder);
            throw;
        }
        pool.Wake();
        Foreground(sandbox);

        var now = DateTimeOffset.UtcNow;
        sandbox.CreatedAt = now;
        sandbox.ExpiresAt = persistent ? DateTimeOffset.MaxValue : now.AddSeconds(timeout);
        sandbox.TimeoutS = timeout;
        sandbox.Env = env;
        sandbox.Metadata = metadata;
        sandbox.PoolHit = hit;
        sandbox.Owner = owner;
        sandbox.Name = name;
        sandbox.Persistent = persistent;
        sandbox.IdleTimeoutS = idle;
        sandbox.HibernateAfterS = hibernateAfter;
        if (diskMb != sandbox.DiskMb) quota?.SetLimit(sandbox.Dirs, (long)diskMb << 20);
        sandbox.DiskMb = diskMb;
        registry.SetName(owner, name, sandbox.Id);
        sandbox.Touch();
        var recordStart = Stopwatch.GetTimestamp();
        records.Save(sandbox);
        sandbox.TimingsMs["record"] = Math.Round(Stopwatch.GetElapsedTime(recordStart).TotalMilliseconds, 3);
        sandbox.TimingsMs["total"] = Timings.Ms(total);
        registry.AddLive(sandbox);
        (hit ? metrics.CreatePoolHitSeconds : metrics.CreatePoolMissSeconds).Observe(total.Elapsed.TotalSeconds);
        LogCreated(sandbox.Id, template.Name, sandbox.Pid, hit, total.Elapsed.TotalMilliseconds);
        return sandbox;
    }

    /// <summary>
    /// The pool's sandboxes are made and warmed at nice 19 (the zygote's), so that refills never
    /// slow anyone's calls; the agent and its threads (its process group) run at 0 from the moment
    /// a client has the sandbox. The sandbox itself cannot: it has no privilege over its priority.
    /// (A sandbox made while a client waits, a pool miss or a resume, is made at 0.)
    /// </summary>
    private static void Foreground(Sandbox sb)
    {
        if (sb.Pid > 0) Forkbox.Linux.Processes.SetGroupNice(sb.Pid, 0);
    }

    /// <summary>Applies what the caller asked for to a sandbox taken from the pool: limits (if not the defaults) and environment.</summary>
    private async Task ConfigureTakenAsync(Sandbox sb, SandboxLimits limits, Dictionary<string, string>? env, ResolvedPolicy? policy,
        CancellationToken ct)
    {
        var step = Stopwatch.StartNew();
        sb.TimingsMs.Clear();
        if (limits != sb.Limits)
        {
            sb.Cgroup.SetLimits(limits, sb.Limits);
            sb.Limits = limits;
        }
        if (env is { Count: > 0 })
        {
            await calls.FileCallAsync(sb, (agent, t) => agent.SetEnvAsync(env, t), ct).ConfigureAwait(false);
        }
        sb.TimingsMs["pool_take"] = Timings.Lap(step);
        if (policy is not null)
        {
            await egress.AdmitAsync(sb, policy, ct).ConfigureAwait(false);
            sb.TimingsMs["network_admit"] = Timings.Lap(step);
        }
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "sandbox {SandboxId} created from {Template}, pid {Pid}, pool hit {PoolHit}, in {Ms:F2} ms")]
    private partial void LogCreated(string sandboxId, string template, int pid, bool poolHit, double ms);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: discarded from the pool: {Error}")]
    private partial void LogPoolDiscard(string sandboxId, string error);
}
