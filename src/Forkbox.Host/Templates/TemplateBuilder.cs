using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Linux.Storage;

namespace Forkbox.Host.Templates;

/// <summary>
/// Builds a template into DATA/templates/NAME/rootfs from a directory, a tarball or debootstrap,
/// with a template.json beside it. The build happens in a staging directory that is renamed into
/// place at the end, so a server never sees half a template. The root filesystem must have its own
/// Python 3.9 or newer at /usr/bin/python3: its zygote runs that Python, chrooted into it.
/// Device nodes are removed from it and setuid/setgid bits cleared (an exported image or a
/// tarball may hold /dev/kvm or a setuid shell), and the build says which.
/// </summary>
public static partial class TemplateBuilder
{
    public const string ManifestName = "template.json";

    public sealed record Manifest(string Name, string Source, IReadOnlyList<string> Preload, string Python, long SizeBytes, DateTimeOffset CreatedAt);

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,62}$")]
    private static partial Regex NamePattern();

    public static Manifest ReadManifest(string path) =>
        JsonSerializer.Deserialize<Manifest>(File.ReadAllText(path), JsonOptions)
        ?? throw new InvalidDataException($"{path} is empty");

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <param name="from">"debootstrap", a directory, or a .tar/.tar.gz/.tar.xz/.tar.zst file.</param>
    public static async Task<Manifest> BuildAsync(ServerOptions options, string name, string from, IReadOnlyList<string> packages,
        IReadOnlyList<string> preload, Action<string> progress, CancellationToken ct)
    {
        if (!NamePattern().IsMatch(name) || name is TemplateCatalog.DefaultName or TemplateCatalog.DataSciName)
            throw new BadRequestException($"template name '{name}' must be 1–63 of a-z, 0-9 and '-', and not a built-in name");
        var target = Path.Combine(options.TemplatesDir, name);
        if (Directory.Exists(target))
            throw new ConflictException($"template '{name}' already exists; delete it first (forkbox template rm {name})", "template_exists");
        // The template is made in DATA/templates/.build-NAME-PID/templates/NAME: that directory is
        // the data directory of the build's trial server (TemplateTrial), where it is a template already.
        var trialData = Path.Combine(options.TemplatesDir, $".build-{name}-{Environment.ProcessId}");
        var staging = Path.Combine(trialData, "templates", name);
        var rootfs = Path.Combine(staging, "rootfs");
        if (Directory.Exists(trialData)) LayerFiles.DeleteTree(trialData);
        Directory.CreateDirectory(rootfs);
        var clock = Stopwatch.StartNew();
        try
        {
            if (from == "debootstrap")
            {
                var include = string.Join(',', new[] { "python3" }.Concat(packages));
                progress($"debootstrap: Debian bookworm (minbase) with {include}");
                await RunAsync("debootstrap", ["--variant=minbase", $"--include={include}", "bookworm", rootfs], progress, ct);
            }
            else if (Directory.Exists(from))
            {
                progress($"copying {from} (reflinks where the filesystem allows)");
                await RunAsync("cp", ["-a", "--reflink=auto", Path.GetFullPath(from) + "/.", rootfs], progress, ct);
            }
            else if (File.Exists(from))
            {
                progress($"extracting {from}");
                await RunAsync("tar", ["-xpf", Path.GetFullPath(from), "--numeric-owner", "-C", rootfs], progress, ct);
            }
            else
            {
                throw new BadRequestException($"--from '{from}' is neither 'debootstrap', a directory nor a tarball");
            }
            if (packages.Count > 0 && from != "debootstrap")
                progress("note: --packages is used with --from debootstrap only; install packages into the directory or tarball yourself");
            const string python = "/usr/bin/python3";
            if (!File.Exists(rootfs + python) && new FileInfo(rootfs + python).LinkTarget is null)
                throw new BadRequestException($"the root filesystem has no {python}: a template needs Python 3.9+ of its own");
            var size = DropDevicesAndSetuid(rootfs, progress);
            var manifest = new Manifest(name, from, preload, python, size, DateTimeOffset.UtcNow);
            await File.WriteAllTextAsync(Path.Combine(staging, ManifestName), JsonSerializer.Serialize(manifest, JsonOptions), ct);
            await TemplateTrial.RunAsync(options, trialData, name, progress, ct);
            Directory.Move(staging, target);
            progress($"template '{name}' ready: {size / 1048576.0:F1} MiB in {clock.Elapsed.TotalSeconds:F1} s");
            return manifest;
        }
        finally
        {
            // Never by name through the template's root: it may hold links anywhere (LayerFiles).
            if (Directory.Exists(trialData)) LayerFiles.DeleteTree(trialData);
        }
    }

    /// <summary>
    /// Removes every device node and clears setuid and setgid on every file of the tree. The walk
    /// goes through <see cref="LayerFiles"/>, so it never follows a symbolic link (.NET's recursive
    /// enumeration enters links to directories: a tarball's link to a host directory had that
    /// directory's device node deleted). Returns the bytes of the tree's regular files, each
    /// counted once however many names it has (<see cref="TreeSize"/>).
    /// </summary>
    private static long DropDevicesAndSetuid(string rootfs, Action<string> progress)
    {
        var size = new TreeSize();
        var devices = new List<string>();
        var setuid = new List<string>();
        using var tree = new LayerFiles(rootfs);
        foreach (var (rel, stat) in tree.Entries())
        {
            if (stat.Type is UnixFileType.CharacterDevice or UnixFileType.BlockDevice)
            {
                tree.RemoveEntry(rel);
                devices.Add(rel);
            }
            else if (stat.Type == UnixFileType.RegularFile)
            {
                size.Add(stat);
                if ((stat.Permissions & SetuidSetgid) != 0 && tree.TrySetFilePermissions(rel, stat.Permissions & ~SetuidSetgid))
                    setuid.Add(rel);
            }
        }
        if (devices.Count > 0)
            progress($"removed {devices.Count} device nodes (they would not open in a sandbox): {Listed(devices)}");
        if (setuid.Count > 0)
            progress($"cleared setuid/setgid on {setuid.Count} files (sandboxes mount templates nosuid): {Listed(setuid)}");
        return size.Bytes;
    }

    private const int SetuidSetgid = 0b110_000_000_000; // S_ISUID | S_ISGID

    private static string Listed(List<string> paths) =>
        string.Join(", ", paths.Order(StringComparer.Ordinal).Take(20)) + (paths.Count > 20 ? $" and {paths.Count - 20} more" : "");

    /// <summary>Runs a build tool, passing each line it prints to progress; a non-zero exit is an error naming the tool.</summary>
    private static async Task RunAsync(string file, string[] args, Action<string> progress, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var lastLines = new Queue<string>();
        void OnLine(string? line)
        {
            if (line is null) return;
            progress("  " + line);
            lock (lastLines)
            {
                lastLines.Enqueue(line);
                if (lastLines.Count > 5) lastLines.Dequeue();
            }
        }
        p.OutputDataReceived += (_, e) => OnLine(e.Data);
        p.ErrorDataReceived += (_, e) => OnLine(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
            throw new ExecutorException($"{file} failed with exit code {p.ExitCode}: {string.Join(" | ", lastLines)}");
    }
}
