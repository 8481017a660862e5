using System.Text.Json;
using System.Text.Json.Serialization;

namespace Forkbox.Host.Agents;

// The messages of the control channel, one record each: the header of a frame (AgentFrame.cs).
// The Python side is forkbox_agent/protocol.py, which has the same op, event and field names;
// AgentProtocolContractTests_without_root checks that each side decodes what the other encodes.
// Requests go hostd → agent and carry "op"; answers and events go agent → hostd and carry "ev".
// Every call's answers carry its "id" (a number hostd counts per connection).

/// <summary>The ops an agent serves (the "op" of a request).</summary>
public static class AgentOps
{
    public const string Exec = "exec";
    public const string SetEnv = "setenv";
    public const string Write = "write";
    public const string Read = "read";
    public const string List = "list";
    public const string Remove = "remove";
    public const string Fork = "fork";
    public const string Hibernate = "hibernate";
    public const string Restore = "restore";

    /// <summary>Every op, for the contract test.</summary>
    public static readonly string[] All = [Exec, SetEnv, Write, Read, List, Remove, Fork, Hibernate, Restore];
}

/// <summary>The events an agent sends (the "ev" of an answer).</summary>
public static class AgentEvents
{
    /// <summary>The first frame on a new control socket (or why a fork could not start).</summary>
    public const string Hello = "hello";
    /// <summary>Lines an exec wrote to stdout or stderr.</summary>
    public const string Out = "out";
    /// <summary>The value of an exec's last expression (rich calls).</summary>
    public const string Result = "result";
    /// <summary>A MIME bundle a cell showed while it ran (a matplotlib figure's plt.show(); rich calls).</summary>
    public const string Display = "display";
    /// <summary>What an exec raised (rich calls).</summary>
    public const string Error = "error";
    /// <summary>An exec's last frame.</summary>
    public const string Exit = "exit";
    /// <summary>Any other op's answer, when it worked.</summary>
    public const string Ok = "ok";
    /// <summary>Any op's answer when it could not be done, with a code of <see cref="AgentErrorCodes"/>.</summary>
    public const string Fail = "fail";

    public static readonly string[] All = [Hello, Out, Result, Display, Error, Exit, Ok, Fail];
}

// ---- requests (hostd → agent) ----------------------------------------------------------------

/// <summary>Runs Python (<c>lang</c> "python") or a bash command; answered by out/result/error frames and one exit (or fail).</summary>
/// <param name="Timeout">Seconds.</param>
/// <param name="Rich">Send result and error events too, not only output.</param>
/// <param name="Cwd">Left out when null.</param>
/// <param name="Env">Left out when null; pass null rather than an empty map.</param>
public readonly record struct AgentExecRequest(long Id, string Lang, string Code, double Timeout, bool Rich, string? Cwd,
    IReadOnlyDictionary<string, string>? Env)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Exec;
}

/// <summary>Adds variables to the agent's environment (a pooled sandbox taken with env); answered by ok.</summary>
public readonly record struct AgentSetEnvRequest(long Id, IReadOnlyDictionary<string, string> Env)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.SetEnv;
}

/// <summary>Writes the frame's payload to <c>path</c> (parents made, replaced atomically); answered by <see cref="AgentWriteOk"/>.</summary>
public readonly record struct AgentWriteRequest(long Id, string Path)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Write;
}

/// <summary>Reads a regular file of at most <c>max</c> bytes; answered by <see cref="AgentReadOk"/> with the contents as payload.</summary>
public readonly record struct AgentReadRequest(long Id, string Path, long Max)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Read;
}

/// <summary>Lists a directory; answered by <see cref="AgentListOk"/>.</summary>
public readonly record struct AgentListRequest(long Id, string Path)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.List;
}

/// <summary>Removes a file, or a directory (its contents too when <c>recursive</c>); answered by ok.</summary>
public readonly record struct AgentRemoveRequest(long Id, string Path, bool Recursive)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Remove;
}

/// <summary>Forks the agent <c>n</c> times between two calls; answered by <see cref="AgentForkOk"/>.</summary>
public readonly record struct AgentForkRequest(long Id, int N)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Fork;
}

/// <summary>Saves the REPL's state under <c>path</c> (inside the sandbox); answered by <see cref="AgentHibernateOk"/>.</summary>
public readonly record struct AgentHibernateRequest(long Id, string Path)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Hibernate;
}

/// <summary>Takes up a state hibernate saved under <c>path</c>; answered by <see cref="AgentRestoreOk"/>.</summary>
public readonly record struct AgentRestoreRequest(long Id, string Path)
{
    [JsonPropertyOrder(-1)] public string Op => AgentOps.Restore;
}

// ---- answers and events (agent → hostd) --------------------------------------------------------

/// <summary>
/// The first frame on a control socket: the sandbox's id and the one-time token hostd gave it, or,
/// from a fork that could not start, why (<c>error</c>).
/// </summary>
public sealed record AgentHello(string? Id, string? Token, string? Error = null)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Hello;
}

/// <summary>Whole lines (no newline) written by an exec to stream <c>s</c>: 1 stdout, 2 stderr.</summary>
public sealed record AgentOutEvent(long Id, int S, IReadOnlyList<string> Lines)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Out;
}

/// <summary>
/// The value of an exec's last expression: its repr, its type name, its JSON value (the repr when
/// it has none; <paramref name="DataKind"/> "json" or "repr" says which) and its MIME bundle
/// (MIME type → text, base64 for binary types, a JSON value for application/json).
/// </summary>
public sealed record AgentResultEvent(long Id, string? Repr, string? Kind, JsonElement Data, string? DataKind = null,
    JsonElement? Mime = null)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Result;
}

/// <summary>A MIME bundle (as in <see cref="AgentResultEvent.Mime"/>) that a cell showed while it ran.</summary>
public sealed record AgentDisplayEvent(long Id, JsonElement? Mime)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Display;
}

/// <summary>What an exec raised: the exception's type name, its text, and the traceback from the cell down.</summary>
public sealed record AgentErrorEvent(long Id, string? Name, string? Value, string? Traceback)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Error;
}

/// <summary>An exec's last frame: its exit code (124 on a timeout) and whether its timeout ended it.</summary>
public sealed record AgentExitEvent(long Id, int Code, bool Timeout)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Exit;
}

/// <summary>A call that could not be done. <c>id</c> is null when the agent could not read the request's.</summary>
public sealed record AgentFail(long? Id, string? Code, string? Message)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Fail;
}

/// <summary>The answer of an op that returns nothing but success (setenv, remove).</summary>
public sealed record AgentOk(long Id)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>A write's answer: the bytes written.</summary>
public sealed record AgentWriteOk(long Id, long Size)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>A read's answer: the file's size; its contents are the frame's payload.</summary>
public sealed record AgentReadOk(long Id, long Size)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>One directory entry: <c>type</c> is "dir", "file", "symlink" or "other"; <c>mtime</c> in Unix seconds.</summary>
public sealed record AgentFileEntry(string Name, string Type, long Size, double Mtime);

/// <summary>A list's answer, sorted by name.</summary>
public sealed record AgentListOk(long Id, IReadOnlyList<AgentFileEntry> Entries)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>
/// A fork's answer: the forks' pids as the parent's PID namespace sees them. Kept as the JSON the
/// agent sent (an array of numbers when it is well): user code runs in the agent and can answer
/// anything, and hostd checks it itself (SandboxManager.ForkPids) with a message that says so.
/// </summary>
public sealed record AgentForkOk(long Id, JsonElement Pids)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>
/// A hibernate's answer: the globals saved (in order), those not saved with why, the top-level
/// modules to import again, the state's size, and the threads and background processes that do
/// not survive.
/// </summary>
public sealed record AgentHibernateOk(long Id, IReadOnlyList<string> Saved, IReadOnlyDictionary<string, string>? NotSaved,
    IReadOnlyList<string> Modules, long Bytes, IReadOnlyList<string> Threads, IReadOnlyList<string> Processes)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>A restore's answer: the globals restored, what was not with why, the modules imported again, the state's size.</summary>
public sealed record AgentRestoreOk(long Id, IReadOnlyList<string> Restored, IReadOnlyDictionary<string, string>? NotRestored,
    IReadOnlyList<string> Modules, long Bytes)
{
    [JsonPropertyOrder(-1)] public string Ev => AgentEvents.Ok;
}

/// <summary>
/// Source-generated JSON for every message of the control channel. The writer's own options (the
/// defaults of <see cref="Utf8JsonWriter"/>) decide escaping, as they did when hostd wrote the
/// headers by hand.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AgentExecRequest))]
[JsonSerializable(typeof(AgentSetEnvRequest))]
[JsonSerializable(typeof(AgentWriteRequest))]
[JsonSerializable(typeof(AgentReadRequest))]
[JsonSerializable(typeof(AgentListRequest))]
[JsonSerializable(typeof(AgentRemoveRequest))]
[JsonSerializable(typeof(AgentForkRequest))]
[JsonSerializable(typeof(AgentHibernateRequest))]
[JsonSerializable(typeof(AgentRestoreRequest))]
[JsonSerializable(typeof(AgentHello))]
[JsonSerializable(typeof(AgentOutEvent))]
[JsonSerializable(typeof(AgentResultEvent))]
[JsonSerializable(typeof(AgentDisplayEvent))]
[JsonSerializable(typeof(AgentErrorEvent))]
[JsonSerializable(typeof(AgentExitEvent))]
[JsonSerializable(typeof(AgentFail))]
[JsonSerializable(typeof(AgentOk))]
[JsonSerializable(typeof(AgentWriteOk))]
[JsonSerializable(typeof(AgentReadOk))]
[JsonSerializable(typeof(AgentListOk))]
[JsonSerializable(typeof(AgentForkOk))]
[JsonSerializable(typeof(AgentHibernateOk))]
[JsonSerializable(typeof(AgentRestoreOk))]
[JsonSerializable(typeof(AgentErrorTable))]
public sealed partial class AgentJson : JsonSerializerContext;
