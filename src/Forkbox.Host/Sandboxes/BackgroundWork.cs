namespace Forkbox.Host.Sandboxes;

/// <summary>
/// The clean-ups the sandbox services start and do not wait for (kills, link removals, layer
/// removals), kept so that shutdown can wait for every one of them, those they start included.
/// </summary>
public sealed class BackgroundWork
{
    private readonly List<Task> _tasks = new();

    public void Track(Task task)
    {
        lock (_tasks)
        {
            _tasks.RemoveAll(t => t.IsCompleted);
            _tasks.Add(task);
        }
    }

    /// <summary>Waits until no tracked task is left running, counting those tracked meanwhile.</summary>
    public async Task DrainAsync()
    {
        while (true)
        {
            Task[] pending;
            lock (_tasks) pending = _tasks.Where(t => !t.IsCompleted).ToArray();
            if (pending.Length == 0) return;
            await Task.WhenAll(pending).ConfigureAwait(false);
        }
    }
}
