using System.Reflection;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;
using Forkbox.Host.Sandboxes;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Benchmarks;

/// <summary>
/// The steps of hostd's exec path that the benchmarks call as they are, so that a change to them
/// shows in the figures: SandboxCalls' private event forwarding, bound once by name (when it
/// moves, the benchmarks that use it fail with the message below and the budget check counts them
/// as not run), and the endpoints' request-body read.
/// </summary>
internal static class HostSeams
{
    /// <summary>SandboxCalls.Forward: passes one agent event to the sink, charged to the call's output allowance.</summary>
    public delegate void ForwardEvent(in AgentExecEvent ev, IExecSink sink, ref long outputLeft);

    public static readonly ForwardEvent Forward = Bind<ForwardEvent>(typeof(SandboxCalls), "Forward");

    /// <summary>RequestJson.ReadAsync&lt;ExecRequest&gt;: the body of POST /v1/sandboxes/{id}/exec.</summary>
    public static readonly Func<HttpContext, JsonTypeInfo<ExecRequest>, Task<ExecRequest?>> ReadExecRequest = RequestJson.ReadAsync;

    private static T Bind<T>(Type owner, string name) where T : Delegate
    {
        var method = owner.GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new MissingMethodException($"{owner.Name}.{name} is gone: point bench/Forkbox.Benchmarks/HostSeams.cs at where it moved");
        return method.CreateDelegate<T>();
    }
}
