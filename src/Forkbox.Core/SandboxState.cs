namespace Forkbox.Core;

/// <summary>The states a sandbox is reported in, as they appear on the wire.</summary>
public static class SandboxState
{
    /// <summary>Idle and accepting calls.</summary>
    public const string Ready = "ready";
    /// <summary>A call is in progress; further calls queue.</summary>
    public const string Running = "running";
    /// <summary>A persistent sandbox stopped by the cgroup freezer: memory and every process kept; resumes in milliseconds.</summary>
    public const string Paused = "paused";
    /// <summary>A persistent sandbox written to disk (writable layer and REPL globals) and removed from memory.</summary>
    public const string Hibernated = "hibernated";
    /// <summary>The server restarted while the sandbox ran or was paused, and its processes did not survive; see lost_reason.</summary>
    public const string Lost = "lost";
    /// <summary>The agent is gone (killed for memory, crashed, unresponsive); see dead_reason. Only DELETE and GET work.</summary>
    public const string Dead = "dead";
}
