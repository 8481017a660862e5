using System.Runtime.CompilerServices;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// The agent's ops as typed calls over one <see cref="AgentConnection"/>: one method per op of
/// <see cref="AgentOps"/>, each sending its request record and decoding its answer record
/// (<see cref="AgentJson"/>). Transport only: the caller holds the connection's
/// <see cref="AgentConnection.CallLock"/>, bounds the call with its token, and decides what a
/// lost channel (<see cref="AgentFrame.IsChannelLost"/>), a frame over its limit
/// (<see cref="AgentFrameTooLargeException"/>) or a fail answer (<see cref="AgentErrorCodes"/>)
/// means for the sandbox. Call ids come from the connection.
/// </summary>
public sealed class AgentClient(AgentConnection connection)
{
    private static AgentJson Json => AgentJson.Default;

    public AgentConnection Connection => connection;

    /// <summary>Adds <paramref name="env"/> to the agent's environment (a pooled sandbox taken with variables).</summary>
    public ValueTask<AgentAnswer<AgentOk>> SetEnvAsync(IReadOnlyDictionary<string, string> env, CancellationToken ct) =>
        CallAsync(new AgentSetEnvRequest(connection.NextCallId(), env), Json.AgentSetEnvRequest, Json.AgentOk, default, 0, ct);

    /// <summary>Writes <paramref name="contents"/> to <paramref name="path"/>, sent after the request uncopied.</summary>
    public ValueTask<AgentAnswer<AgentWriteOk>> WriteAsync(string path, ReadOnlyMemory<byte> contents, CancellationToken ct) =>
        CallAsync(new AgentWriteRequest(connection.NextCallId(), path), Json.AgentWriteRequest, Json.AgentWriteOk, contents, 0, ct);

    /// <summary>
    /// Reads a file of at most <paramref name="max"/> bytes: the answer's <see cref="AgentAnswer{T}.Payload"/>.
    /// An answer declaring more is not read (<see cref="AgentFrameTooLargeException"/>).
    /// </summary>
    public ValueTask<AgentAnswer<AgentReadOk>> ReadAsync(string path, long max, CancellationToken ct) =>
        CallAsync(new AgentReadRequest(connection.NextCallId(), path, max), Json.AgentReadRequest, Json.AgentReadOk, default, max, ct);

    /// <summary>
    /// Reads a file of at most <paramref name="max"/> bytes into the stream
    /// <paramref name="destination"/> gives once the file's size is known (a download's response
    /// body), through a buffer of 64 KiB: the file is never held whole. Each piece must arrive
    /// within <paramref name="pieceTimeout"/>. An answer declaring more than <paramref name="max"/>
    /// is not read (<see cref="AgentFrameTooLargeException"/>).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<AgentAnswer<AgentReadOk>> ReadToAsync(string path, long max, Func<long, Stream> destination, TimeSpan pieceTimeout,
        CancellationToken ct)
    {
        await connection.SendAsync(new AgentReadRequest(connection.NextCallId(), path, max), Json.AgentReadRequest, default, ct).ConfigureAwait(false);
        var (m, length) = await connection.ReadHeadAsync(max, ct).ConfigureAwait(false);
        if (!ReferenceEquals(m.Event, AgentEvents.Ok))
        {
            var fail = m.Decode(Json.AgentFail);
            await connection.CopyPayloadAsync(length, Stream.Null, pieceTimeout).ConfigureAwait(false); // a fail has none, unless the agent lies
            return new AgentAnswer<AgentReadOk>(null, fail, []);
        }
        var ok = m.Decode(Json.AgentReadOk);
        await connection.CopyPayloadAsync(length, destination(length), pieceTimeout).ConfigureAwait(false);
        return new AgentAnswer<AgentReadOk>(ok, null, []);
    }

    public ValueTask<AgentAnswer<AgentListOk>> ListAsync(string path, CancellationToken ct) =>
        CallAsync(new AgentListRequest(connection.NextCallId(), path), Json.AgentListRequest, Json.AgentListOk, default, 0, ct);

    public ValueTask<AgentAnswer<AgentOk>> RemoveAsync(string path, bool recursive, CancellationToken ct) =>
        CallAsync(new AgentRemoveRequest(connection.NextCallId(), path, recursive), Json.AgentRemoveRequest, Json.AgentOk, default, 0, ct);

    /// <summary>Forks the agent <paramref name="n"/> times; the answer's pids are checked by the caller (they come from the sandbox).</summary>
    public ValueTask<AgentAnswer<AgentForkOk>> ForkAsync(int n, CancellationToken ct) =>
        CallAsync(new AgentForkRequest(connection.NextCallId(), n), Json.AgentForkRequest, Json.AgentForkOk, default, 0, ct);

    /// <summary>Saves the REPL's state under <paramref name="path"/> (a path inside the sandbox).</summary>
    public ValueTask<AgentAnswer<AgentHibernateOk>> HibernateAsync(string path, CancellationToken ct) =>
        CallAsync(new AgentHibernateRequest(connection.NextCallId(), path), Json.AgentHibernateRequest, Json.AgentHibernateOk, default, 0, ct);

    /// <summary>Takes up the state a hibernate saved under <paramref name="path"/>.</summary>
    public ValueTask<AgentAnswer<AgentRestoreOk>> RestoreAsync(string path, CancellationToken ct) =>
        CallAsync(new AgentRestoreRequest(connection.NextCallId(), path), Json.AgentRestoreRequest, Json.AgentRestoreOk, default, 0, ct);

    /// <summary>
    /// Starts an exec: its events follow, read with <see cref="ReadExecEventAsync"/> until one
    /// <see cref="AgentExecEvent.IsLast"/>. An empty <paramref name="env"/> is not sent.
    /// </summary>
    public ValueTask SendExecAsync(string lang, string code, double timeout, bool rich, string? cwd,
        IReadOnlyDictionary<string, string>? env, CancellationToken ct) =>
        connection.SendAsync(new AgentExecRequest(connection.NextCallId(), lang, code, timeout, rich, cwd, env is { Count: > 0 } ? env : null),
            Json.AgentExecRequest, default, ct);

    /// <summary>
    /// The next event of the exec in progress. Anything but out, result, display, error or exit is read as
    /// a fail (as the agent answers a call it could not run), which ends the call.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<AgentExecEvent> ReadExecEventAsync(CancellationToken ct)
    {
        var m = await connection.ReadMessageAsync(0, ct).ConfigureAwait(false);
        return m.Event switch
        {
            AgentEvents.Out => new AgentExecEvent(m.Decode(Json.AgentOutEvent)),
            AgentEvents.Result => new AgentExecEvent(m.Decode(Json.AgentResultEvent)),
            AgentEvents.Display => new AgentExecEvent(m.Decode(Json.AgentDisplayEvent)),
            AgentEvents.Error => new AgentExecEvent(m.Decode(Json.AgentErrorEvent)),
            AgentEvents.Exit => new AgentExecEvent(m.Decode(Json.AgentExitEvent)),
            _ => new AgentExecEvent(m.Decode(Json.AgentFail)),
        };
    }

    /// <summary>One request, one answer: "ok" decoded as <typeparamref name="TOk"/>, anything else as a fail.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<AgentAnswer<TOk>> CallAsync<TRequest, TOk>(TRequest request, JsonTypeInfo<TRequest> requestType,
        JsonTypeInfo<TOk> okType, ReadOnlyMemory<byte> payload, long maxAnswerPayload, CancellationToken ct) where TOk : class
    {
        await connection.SendAsync(request, requestType, payload, ct).ConfigureAwait(false);
        var m = await connection.ReadMessageAsync(maxAnswerPayload, ct).ConfigureAwait(false);
        return ReferenceEquals(m.Event, AgentEvents.Ok)
            ? new AgentAnswer<TOk>(m.Decode(okType), null, m.Payload)
            : new AgentAnswer<TOk>(null, m.Decode(Json.AgentFail), []);
    }
}

/// <summary>An answer to one call: <see cref="Ok"/> when it worked, else <see cref="Fail"/>.</summary>
public readonly record struct AgentAnswer<T>(T? Ok, AgentFail? Fail, byte[] Payload) where T : class
{
    public bool IsOk => Ok is not null;

    /// <summary>The fail's code, or null: a code of <see cref="AgentErrorCodes"/>.</summary>
    public string? Code => Fail?.Code;

    /// <summary>The fail's message, or "".</summary>
    public string Message => Fail?.Message ?? "";
}

/// <summary>One event of an exec: exactly one of its properties is set.</summary>
public readonly struct AgentExecEvent
{
    public AgentExecEvent(AgentOutEvent e) => Out = e;
    public AgentExecEvent(AgentResultEvent e) => Result = e;
    public AgentExecEvent(AgentDisplayEvent e) => Display = e;
    public AgentExecEvent(AgentErrorEvent e) => Error = e;
    public AgentExecEvent(AgentExitEvent e) => Exit = e;
    public AgentExecEvent(AgentFail e) => Fail = e;

    public AgentOutEvent? Out { get; }
    public AgentResultEvent? Result { get; }
    public AgentDisplayEvent? Display { get; }
    public AgentErrorEvent? Error { get; }
    public AgentExitEvent? Exit { get; }

    /// <summary>The agent could not run the call at all (or sent an event hostd does not know).</summary>
    public AgentFail? Fail { get; }

    /// <summary>The call's last event: an exit or a fail.</summary>
    public bool IsLast => Exit is not null || Fail is not null;
}
