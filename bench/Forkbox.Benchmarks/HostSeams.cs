using System.Reflection;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;
using Forkbox.Host.Sandboxes;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Benchmarks;

/// <summary>
/// The private steps of hostd's exec path that the benchmarks call as they are, so that a change
/// to them shows in the figures: SandboxCalls' event forwarding and the endpoints' request-body
/// read. Bound once by name; when one moves, the benchmarks that use it fail with the message
/// below and the budget check counts them as not run.
/// </summary>
internal static class HostSeams
{
    /// <summary>SandboxCalls.Forward: passes one agent event to the sink, charged to the call's output allowance.</summary>
    public delegate void ForwardEvent(in AgentExecEvent ev, IExecSink sink, ref long outputLeft);

    public static readonly ForwardEvent Forward = Bind<ForwardEvent>(typeof(SandboxCalls), "Forward");

    /// <summary>SandboxEndpoints.ReadJsonAsync&lt;ExecRequest&gt;: the body of POST /v1/sandboxes/{id}/exec.</summary>
    public static readonly Func<HttpContext, JsonTypeInfo<ExecRequest>, Task<ExecRequest?>> ReadExecRequest =
        Bind<Func<HttpContext, JsonTypeInfo<ExecRequest>, Task<ExecRequest?>>>(typeof(SandboxEndpoints), "ReadJsonAsync", typeof(ExecRequest));

    private static T Bind<T>(Type owner, string name, params Type[] typeArguments) where T : Delegate
    {
        var method = owner.GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new MissingMethodException($"{owner.Name}.{name} is gone: point bench/Forkbox.Benchmarks/HostSeams.cs at where it moved");
        if (typeArguments.Length > 0) method = method.MakeGenericMethod(typeArguments);
        return method.CreateDelegate<T>();
    }
}
