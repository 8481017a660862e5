namespace Forkbox.Host.Sandboxes;

/// <summary>What a shutdown did with the sandboxes it found: the server's last lines report it.</summary>
public sealed class ShutdownSummary
{
    private readonly Lock _lock = new();
    private readonly List<string> _killed = new();
    private int _hibernated;
    private int _destroyed;

    /// <summary>Persistent sandboxes saved to disk; they resume after the next start.</summary>
    public int Hibernated => Volatile.Read(ref _hibernated);

    /// <summary>Sandboxes ended the ordinary way, within the grace (not persistent, or they could not be hibernated).</summary>
    public int Destroyed => Volatile.Read(ref _destroyed);

    /// <summary>The ids of those that did not answer within the grace and were killed.</summary>
    public IReadOnlyList<string> Killed
    {
        get
        {
            lock (_lock) return _killed.ToArray();
        }
    }

    /// <summary>Cleaning work still running when the shutdown stopped waiting for it (the next start finishes it).</summary>
    public int Unfinished { get; set; }

    public void AddHibernated() => Interlocked.Increment(ref _hibernated);

    public void AddDestroyed() => Interlocked.Increment(ref _destroyed);

    public void AddKilled(string id)
    {
        lock (_lock) _killed.Add(id);
    }
}
