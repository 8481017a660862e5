namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Closed sandboxes whose forks live on. A fork's PID namespace nests in its parent's, and the
/// kernel kills every nested namespace when a PID 1 exits. So closing a sandbox whose forks still
/// run kills everything in it but its PID 1, the agent, which replaces itself with a reaper that
/// holds none of the sandbox's memory (pid1.py, retire), and keeps its cgroup, layers and uid range
/// until that reaper has exited, which it does when its last fork is gone: the sandbox is "retired".
/// </summary>
public sealed class RetiredSandboxes
{
    private readonly List<Sandbox> _retired = new();

    public int Count
    {
        get
        {
            lock (_retired) return _retired.Count;
        }
    }

    /// <summary>Whether closing <paramref name="sb"/> must retire it rather than end it.</summary>
    public static bool HasLiveForks(Sandbox sb)
    {
        lock (sb.Children) return sb.Children.Count > 0;
    }

    public void Add(Sandbox sb)
    {
        lock (_retired) _retired.Add(sb);
    }

    /// <summary>Those whose PID 1 has exited, no longer held here: the caller releases them.</summary>
    public List<Sandbox> TakeEnded()
    {
        lock (_retired)
        {
            var done = _retired.Where(sb => sb.Cgroup.Pids().Count == 0).ToList();
            _retired.RemoveAll(done.Contains);
            return done;
        }
    }

    public List<Sandbox> Snapshot()
    {
        lock (_retired) return _retired.ToList();
    }
}
