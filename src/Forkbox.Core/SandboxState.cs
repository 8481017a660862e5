namespace Forkbox.Core;

/// <summary>The states a sandbox is reported in, as they appear on the wire.</summary>
public static class SandboxState
{
    /// <summary>Idle and accepting calls.</summary>
    public const string Ready = "ready";
    /// <summary>A call is in progress; further calls queue.</summary>
    public const string Running = "running";
    /// <summary>The agent is gone (killed for memory, crashed, unresponsive); see dead_reason. Only DELETE and GET work.</summary>
    public const string Dead = "dead";
}
