using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Templates;

namespace Forkbox.Host.Templates;

/// <summary>
/// The templates this host can start sandboxes from. The built-in `default` template needs no
/// download: a small skeleton root (made once under DATA/templates/default) with the host's /usr
/// mounted read-only at /usr under each sandbox's own copy-on-write layer. Nothing else of the
/// host is visible: not its /etc (a curated copy is in the skeleton), /home, /root, /var or /work.
/// </summary>
public sealed class TemplateCatalog
{
    public const string DefaultName = "default";
    public const string DataSciName = "python-datasci";

    /// <summary>What the python-datasci zygote imports on top of the default template's modules.</summary>
    private static readonly string[] DataSciModules = ["numpy", "pandas", "scipy", "scipy.linalg", "scipy.stats"];

    // Bump when the skeleton's contents change, so an old one is rebuilt.
    private const string SkeletonVersion = "3";

    // Host /etc entries a Python + coreutils user space needs. Nothing secret (no shadow, no keys).
    // matplotlibrc: Debian's matplotlib reads its defaults there only ("your Matplotlib install is
    // broken" without it); fonts: fontconfig's, for the fonts matplotlib draws with.
    private static readonly string[] EtcFromHost =
    [
        "passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
        "profile", "profile.d", "bash.bashrc", "environment", "localtime", "timezone", "ssl", "ca-certificates",
        "ca-certificates.conf", "protocols", "services", "mime.types", "debian_version", "os-release",
        "login.defs", "inputrc", "magic", "python3", "skel", "host.conf", "matplotlibrc", "fonts",
    ];

    private static readonly string[] SkeletonDirs =
        ["usr", "proc", "dev", "tmp", "etc", "home", "run", "var", "var/tmp", "var/log", "var/cache", "var/lib",
         "mnt", "opt", "srv", "media", "sys"];

    /// <summary>Directories of "/" that each sandbox's root owns, so it can create files there.</summary>
    private static readonly WritableDir[] RootWritable =
    [
        new("root", 0b111_000_000), new("etc", 0b111_101_101), new("home", 0b111_101_101),
        new("var/tmp", 0b1_111_111_111), new("var/log", 0b111_101_101), new("var/cache", 0b111_101_101),
        new("var/lib", 0b111_101_101), new("run", 0b111_101_101), new("opt", 0b111_101_101),
        new("srv", 0b111_101_101), new("mnt", 0b111_101_101),
    ];

    private readonly Dictionary<string, TemplateDefinition> _templates = new(StringComparer.Ordinal);
    /// <summary>The built-in templates' root (the skeleton and the host's /usr), walked once when first asked.</summary>
    private readonly Lazy<long> _builtinSize;
    private readonly Lock _lock = new();
    private readonly string _templatesDir;

    public TemplateCatalog(ServerOptions options)
    {
        _templatesDir = options.TemplatesDir;
        var skeleton = Path.Combine(options.TemplatesDir, DefaultName, "rootfs");
        EnsureSkeleton(skeleton);
        var defaultTemplate = new TemplateDefinition(
            DefaultName,
            [
                new TemplateLayer("/", skeleton, RootWritable),
                new TemplateLayer("/usr", "/usr", UsrLocalDirs("/usr", "")),
            ],
            ["json", "os", "sys", "re", "subprocess", "pathlib", "collections", "itertools", "functools", "math",
             "random", "datetime", "time", "typing", "dataclasses", "io", "shutil", "tempfile", "textwrap", "traceback"],
            options.Python);
        _templates[DefaultName] = defaultTemplate;
        _builtinSize = new(() => defaultTemplate.Layers.Sum(l => TreeSize.Of(l.LowerDir)));
        // The same root as default, with the scientific stack (Debian's python3-numpy, -pandas,
        // -scipy, installed by scripts/setup.sh) imported in the zygote. Offered only where installed.
        if (DataSciModules.Take(3).All(PythonHasModule))
            _templates[DataSciName] = defaultTemplate with
            {
                Name = DataSciName,
                Preload = [.. defaultTemplate.Preload, .. DataSciModules],
            };
    }

    /// <summary>Whether a module is installed for the host Python, without importing it (a directory in dist-packages).</summary>
    private static bool PythonHasModule(string module) =>
        Directory.GetDirectories("/usr/lib", "python3*").Append("/usr/lib/python3")
            .Any(lib => Directory.Exists(Path.Combine(lib, "dist-packages", module)));

    /// <summary>The bytes of a template's root on disk: a built template's as its build counted them.</summary>
    public long SizeOf(TemplateDefinition template) => template.SizeBytes ?? _builtinSize.Value;

    public IReadOnlyCollection<string> Names
    {
        get
        {
            lock (_lock) return _templates.Keys.ToArray();
        }
    }

    public IReadOnlyList<TemplateDefinition> All
    {
        get
        {
            Rescan();
            lock (_lock) return _templates.Values.ToArray();
        }
    }

    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TemplateDefinition? template)
    {
        try
        {
            template = Get(name);
            return true;
        }
        catch (BadRequestException)
        {
            template = null;
            return false;
        }
    }

    public TemplateDefinition Get(string? name)
    {
        name ??= DefaultName;
        lock (_lock)
            if (_templates.TryGetValue(name, out var t))
                return t;
        // Built by `forkbox template build` while the server runs?
        Rescan();
        lock (_lock)
            return _templates.TryGetValue(name, out var t)
                ? t
                : throw new BadRequestException($"unknown template '{name}'; known templates: {string.Join(", ", _templates.Keys)}");
    }

    /// <summary>Removes a built template's files; the built-in ones cannot be removed.</summary>
    public void Remove(string name)
    {
        var t = Get(name);
        if (t.RootDir is null)
            throw new BadRequestException($"template '{name}' is built in and cannot be deleted");
        lock (_lock) _templates.Remove(name);
        var dir = Path.GetDirectoryName(t.RootDir)!;
        var trash = Path.Combine(_templatesDir, $".deleted-{name}-{Environment.TickCount64}");
        Directory.Move(dir, trash);
        Directory.Delete(trash, recursive: true);
    }

    /// <summary>Loads the templates built into DATA/templates/NAME (those with a template.json).</summary>
    private void Rescan()
    {
        if (!Directory.Exists(_templatesDir)) return;
        foreach (var dir in Directory.GetDirectories(_templatesDir))
        {
            var manifest = Path.Combine(dir, TemplateBuilder.ManifestName);
            var name = Path.GetFileName(dir);
            if (!File.Exists(manifest)) continue;
            lock (_lock)
                if (_templates.ContainsKey(name) || name.StartsWith('.'))
                    continue;
            var m = TemplateBuilder.ReadManifest(manifest);
            var rootfs = Path.Combine(dir, "rootfs");
            var t = new TemplateDefinition(name,
                [new TemplateLayer("/", "/", [.. RootWritable, .. UsrLocalDirs(Path.Combine(rootfs, "usr"), "usr/")])],
                m.Preload, m.Python, rootfs, m.SizeBytes);
            lock (_lock) _templates.TryAdd(name, t);
        }
    }

    /// <summary>/usr/local and the site-packages directory of each Python under usrDir, so `pip install` works as root inside.</summary>
    private static List<WritableDir> UsrLocalDirs(string usrDir, string prefix)
    {
        const int mode = 0b111_101_101;
        var dirs = new List<WritableDir>
        {
            new(prefix + "local", mode), new(prefix + "local/bin", mode), new(prefix + "local/lib", mode), new(prefix + "local/share", mode),
        };
        var lib = Path.Combine(usrDir, "lib");
        foreach (var py in Directory.Exists(lib) ? Directory.GetDirectories(lib, "python3*") : [])
            if (File.Exists(Path.Combine(py, "os.py")))
                dirs.Add(new($"{prefix}local/lib/{Path.GetFileName(py)}/dist-packages", mode));
        return dirs;
    }

    private static void EnsureSkeleton(string dir)
    {
        var marker = Path.Combine(dir, ".forkbox-skeleton");
        if (File.Exists(marker) && File.ReadAllText(marker) == SkeletonVersion) return;
        var staging = dir + ".new";
        if (Directory.Exists(staging)) Directory.Delete(staging, true);
        Directory.CreateDirectory(staging);
        foreach (var d in SkeletonDirs) Directory.CreateDirectory(Path.Combine(staging, d));
        Directory.CreateDirectory(Path.Combine(staging, "root"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(Path.Combine(staging, "tmp"), (UnixFileMode)0b1_111_111_111);
        File.SetUnixFileMode(Path.Combine(staging, "var/tmp"), (UnixFileMode)0b1_111_111_111);
        // Merged-/usr hosts (Debian 12+) have these as links into /usr; others get the same links,
        // since only /usr is taken from the host.
        foreach (var name in new[] { "bin", "sbin", "lib", "lib32", "lib64", "libx32" })
            if (Directory.Exists(Path.Combine("/usr", name)))
                File.CreateSymbolicLink(Path.Combine(staging, name), "usr/" + name);
        foreach (var name in EtcFromHost)
            CopyEntry(Path.Combine("/etc", name), Path.Combine(staging, "etc", name));
        File.WriteAllText(Path.Combine(staging, "etc/hostname"), "sandbox\n");
        File.WriteAllText(Path.Combine(staging, "etc/hosts"), "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        File.WriteAllText(Path.Combine(staging, "etc/resolv.conf"), "");
        PipConfig.WriteInto(staging);
        File.WriteAllText(Path.Combine(staging, ".forkbox-skeleton"), SkeletonVersion);
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
        Directory.Move(staging, dir);
    }

    /// <summary>Copies a file, directory or symbolic link as it is (links are not followed).</summary>
    private static void CopyEntry(string source, string target)
    {
        var info = new FileInfo(source);
        if (info.LinkTarget is { } link)
        {
            File.CreateSymbolicLink(target, link);
        }
        else if (Directory.Exists(source))
        {
            Directory.CreateDirectory(target);
            foreach (var child in Directory.EnumerateFileSystemEntries(source))
                CopyEntry(child, Path.Combine(target, Path.GetFileName(child)));
        }
        else if (info.Exists)
        {
            File.Copy(source, target);
        }
    }
}
