using System.Diagnostics;
using System.Globalization;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Namespaces;

/// <summary>A user namespace whose root is host uid <see cref="UidBase"/>, pinned at <see cref="Path"/>.</summary>
public sealed record UserNamespaceSlot(int Index, long UidBase, string Path);

/// <summary>
/// A fixed table of user namespaces, one per sandbox slot, each mapping uids 0–65535 inside to its
/// own range of unprivileged host uids and owned by the first of them (not by host root), so per-user
/// kernel limits are counted per sandbox family. A sandbox enters its slot's namespace with setns as the
/// last step of its set-up; nothing else has to happen per sandbox. A slot is made the first time it
/// is needed (about 3 ms: a helper process unshares, hostd writes the maps and bind-mounts the
/// namespace file so it outlives the helper) and reused after its sandbox is gone. Two sandboxes
/// that run at the same time never share a slot, so never share host uids.
/// </summary>
public sealed class UserNamespaceSlots : IDisposable
{
    private const int RangeSize = 65_536;
    private readonly string _dir;
    private readonly long _uidBase;
    private readonly int _count;
    private readonly SortedSet<int> _free = new();
    private readonly HashSet<int> _made = new();
    private readonly Lock _lock = new();

    public UserNamespaceSlots(string dir, long uidBase, int count)
    {
        _dir = dir;
        _uidBase = uidBase;
        _count = count;
        Directory.CreateDirectory(dir);
        RemoveStale(dir);
        // The directory is a shared mount of its own, so slots made later also appear in mount
        // namespaces copied earlier (the chrooted zygotes of built templates see it as a slave).
        if (Libc.Mount(dir, dir, null, Libc.MS_BIND, 0) != 0 || Libc.Mount(null, dir, null, Libc.MS_SHARED, 0) != 0)
            throw new IOException($"cannot make {dir} a shared mount: {Libc.LastError()}");
        for (var i = 0; i < count; i++) _free.Add(i);
    }

    public int InUse
    {
        get { lock (_lock) return _count - _free.Count; }
    }

    /// <summary>Takes the lowest free slot, making its namespace if this is its first use; null when all are taken.</summary>
    public UserNamespaceSlot? Acquire()
    {
        int index;
        bool made;
        lock (_lock)
        {
            if (_free.Count == 0) return null;
            index = _free.Min;
            _free.Remove(index);
            made = _made.Contains(index);
        }
        var slot = new UserNamespaceSlot(index, _uidBase + (long)index * RangeSize, System.IO.Path.Combine(_dir, index.ToString(CultureInfo.InvariantCulture)));
        if (!made)
        {
            try
            {
                Make(slot);
            }
            catch
            {
                lock (_lock) _free.Add(index);
                throw;
            }
            lock (_lock) _made.Add(index);
        }
        return slot;
    }

    public void Release(UserNamespaceSlot slot)
    {
        lock (_lock) _free.Add(slot.Index);
    }

    private static void Make(UserNamespaceSlot slot)
    {
        // The helper becomes the slot's own host uid before it unshares, so that uid, not host root,
        // owns the namespace. The kernel charges per-user limits (inotify instances and watches,
        // namespaces, fanotify groups) at each level up to the owner: made by root, every sandbox
        // would draw on root's one allowance (128 inotify instances here) with every other sandbox
        // and with the host's own daemons.
        var uid = slot.UidBase.ToString(CultureInfo.InvariantCulture);
        // The helper waits on its stdin, a pipe from this process: if hostd dies (kill -9) while a
        // slot is made, the helper reads end-of-file and exits too. None of its descriptors are
        // hostd's own, so an orphan could not hold hostd's stdout or stderr open either (a
        // supervisor reading them would wait for it).
        var helper = Process.Start(new ProcessStartInfo("/usr/bin/setpriv",
            ["--reuid", uid, "--regid", uid, "--clear-groups", "--", "/usr/bin/unshare", "--user", "--", "/usr/bin/cat"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("cannot start /usr/bin/setpriv (util-linux)");
        try
        {
            var ours = ReadNsLink("self");
            var deadline = Environment.TickCount64 + 5000;
            while (ReadNsLink(helper.Id.ToString(CultureInfo.InvariantCulture)) == ours)
            {
                if (helper.HasExited || Environment.TickCount64 > deadline)
                    throw new InvalidOperationException($"unshare --user as uid {uid} did not create a user namespace: are unprivileged user namespaces enabled (user.max_user_namespaces, kernel.unprivileged_userns_clone, AppArmor's restrict_unprivileged_userns)?");
                Thread.Sleep(1);
            }
            var map = $"0 {slot.UidBase} {RangeSize}\n";
            File.WriteAllText($"/proc/{helper.Id}/uid_map", map);
            File.WriteAllText($"/proc/{helper.Id}/gid_map", map);
            File.WriteAllBytes(slot.Path, []);
            if (Libc.Mount($"/proc/{helper.Id}/ns/user", slot.Path, null, Libc.MS_BIND, 0) != 0)
                throw new IOException($"cannot pin user namespace at {slot.Path}: {Libc.LastError()}");
        }
        finally
        {
            helper.Kill();
            helper.WaitForExit();
            helper.Dispose();
        }
    }

    private static string ReadNsLink(string pid)
    {
        try
        {
            return new FileInfo($"/proc/{pid}/ns/user").LinkTarget ?? "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    /// <summary>Unmounts and deletes the slot files, then the directory's own bind mount, down to the plain directory.</summary>
    private static void RemoveStale(string dir)
    {
        do
        {
            foreach (var file in Directory.GetFiles(dir))
            {
                Libc.Umount2(file, Libc.MNT_DETACH);
                File.Delete(file);
            }
        }
        while (Libc.Umount2(dir, Libc.MNT_DETACH) == 0); // a crashed run may have left its bind mount
    }

    public void Dispose() => RemoveStale(_dir);

    /// <summary>
    /// What a server that is gone left in <paramref name="dir"/> (its slots directory, under a data
    /// directory no server may use now): every mount on or under it, deepest first, found in the
    /// mount table rather than by listing the directory, then the slot files. Returns how many
    /// mounts went. The namespaces go with their last pin and process.
    /// </summary>
    public static int RemoveLeftovers(string dir)
    {
        dir = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir));
        var mounts = ProcFs.Mounts().Select(m => m.MountPoint)
            .Where(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal))
            .Reverse() // mountinfo lists a mount after the one it sits on
            .ToList();
        var removed = 0;
        foreach (var mount in mounts)
            if (Libc.Umount2(mount, Libc.MNT_DETACH) == 0) removed++;
        if (Directory.Exists(dir))
            foreach (var file in Directory.GetFiles(dir)) File.Delete(file);
        return removed;
    }
}
