using Forkbox.Core.Cluster;

namespace Forkbox.Edge.Registry;

/// <summary>
/// A host in rotation as this edge sees it: its last announcement, plus what this edge learnt
/// since (creates it sent there, and whether the host refused a connection).
/// </summary>
public sealed class HostEntry(HostAnnouncement announcement)
{
    private int _sent;
    private long _downUntil;

    public HostAnnouncement Announcement { get; } = announcement;
    public string Id => Announcement.HostId;
    public string Region => Announcement.Region;
    public Uri Url { get; } = new(announcement.Url.TrimEnd('/') + "/");

    /// <summary>Room left: the announced free slots less the creates this edge sent since the announcement.</summary>
    public int Free => Announcement.Free - Volatile.Read(ref _sent);

    /// <summary>Whether a connection to it failed recently; such a host gets no creates until it announces itself again.</summary>
    public bool Down => Environment.TickCount64 < Interlocked.Read(ref _downUntil);

    public void Sent() => Interlocked.Increment(ref _sent);

    public void MarkDown(TimeSpan howLong) => Interlocked.Exchange(ref _downUntil, Environment.TickCount64 + (long)howLong.TotalMilliseconds);
}
