namespace Forkbox.Core.Options;

/// <summary>Host-side isolation settings that apply to every sandbox. Config section <c>Isolation</c>.</summary>
public sealed record IsolationOptions
{
    /// <summary>First host uid given to sandboxes; sandbox slot i maps root to UidBase + i * 65536.</summary>
    public long UidBase { get; init; } = 1_000_000_000;
    /// <summary>
    /// Whether sandboxes may make AF_VSOCK sockets. Off by default: vsock is not namespaced, so a
    /// port bound in one sandbox is taken in every other, and on a VM host it reaches the hypervisor.
    /// </summary>
    public bool AllowVsock { get; init; }

    /// <summary>One uid range of 65536 per sandbox slot must fit below 2^32.</summary>
    internal void Validate(int maxSandboxes) =>
        ServerOptions.Require(UidBase >= 65_536 && UidBase + (long)maxSandboxes * 65_536 < uint.MaxValue,
            "uid_base must be >= 65536 and leave room for max_sandboxes ranges of 65536 below 2^32");
}
