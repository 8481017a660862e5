using System.Reflection;
using Forkbox.Core;
using Microsoft.Extensions.Configuration;

namespace Forkbox.Host;

/// <summary>
/// Builds <see cref="ServerOptions"/> from, lowest precedence first: defaults, a JSON file
/// (--config, else DATA_DIR/config.json if present), FORKBOX_* environment variables and
/// command-line flags. Keys are property paths, without regard to case: a section per feature in
/// the file ({"Spaces": {"PauseAfterS": 300}}), a double underscore between the parts in the
/// environment (FORKBOX_SPACES__PAUSEAFTERS=300). The flat names of the first releases
/// ({"PauseAfterS": 300}, FORKBOX_POOLSIZE=2) are still read, as their new paths.
/// </summary>
/// <remarks>
/// A key the file has but no option has is refused, with the nearest known key: a mistyped
/// setting would otherwise be dropped without a word. Unknown environment variables are not:
/// FORKBOX_HOST, FORKBOX_API_KEY and others belong to the client and the tests.
/// </remarks>
public static class ServerOptionsLoader
{
    /// <summary>Every setting's path (Section:Name, or Name at the top), in declaration order.</summary>
    public static IReadOnlyList<string> KnownKeys { get; } = Leaves(typeof(ServerOptions), "").ToList();

    /// <summary>The flat keys of the first releases and the path each now has.</summary>
    public static IReadOnlyDictionary<string, string> FlatKeys { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["MaxSandboxes"] = "Limits:MaxSandboxes",
        ["DefaultTimeoutS"] = "Limits:DefaultTimeoutS",
        ["MaxTimeoutS"] = "Limits:MaxTimeoutS",
        ["DefaultMemoryMb"] = "Limits:DefaultMemoryMb",
        ["MaxMemoryMb"] = "Limits:MaxMemoryMb",
        ["DefaultCpus"] = "Limits:DefaultCpus",
        ["MaxCpus"] = "Limits:MaxCpus",
        ["PidsLimit"] = "Limits:PidsLimit",
        ["TmpSizeMb"] = "Limits:TmpSizeMb",
        ["DefaultDiskMb"] = "Limits:DefaultDiskMb",
        ["MaxDiskMb"] = "Limits:MaxDiskMb",
        ["MaxUploadBytes"] = "Limits:MaxUploadBytes",
        ["MaxDownloadBytes"] = "Limits:MaxDownloadBytes",
        ["OutputLimitBytes"] = "Limits:OutputLimitBytes",
        ["DefaultExecTimeoutS"] = "Limits:DefaultExecTimeoutS",
        ["ShutdownGraceS"] = "Limits:ShutdownGraceS",
        ["PoolSize"] = "Pool:Size",
        ["EgressPoolSize"] = "Pool:EgressSize",
        ["ForkWaitS"] = "Forks:WaitS",
        ["PauseAfterS"] = "Spaces:PauseAfterS",
        ["HibernateAfterS"] = "Spaces:HibernateAfterS",
        ["MemoryPressurePercent"] = "Spaces:MemoryPressurePercent",
        ["HibernateOnShutdown"] = "Spaces:HibernateOnShutdown",
        ["Storage"] = "Storage:Strategy",
        ["StorageImageBytes"] = "Storage:ImageBytes",
        ["StorageImageFs"] = "Storage:ImageFs",
        ["UidBase"] = "Isolation:UidBase",
        ["AllowVsock"] = "Isolation:AllowVsock",
        ["NetworkSubnet"] = "Network:Subnet",
        ["NetworkDns"] = "Network:Dns",
        ["NetworkHostResolvConf"] = "Network:HostResolvConf",
        ["NetworkOperatorAllow"] = "Network:OperatorAllow",
        ["NetworkHosts"] = "Network:Hosts",
        ["NetworkRateMbit"] = "Network:RateMbit",
        ["NetworkMaxConnections"] = "Network:MaxConnections",
        ["PortUrlMaxTtlS"] = "Ports:UrlMaxTtlS",
        ["Region"] = "Cluster:Region",
        ["Continent"] = "Cluster:Continent",
        ["Join"] = "Cluster:Join",
        ["HostId"] = "Cluster:HostId",
        ["Advertise"] = "Cluster:Advertise",
        ["HeartbeatS"] = "Cluster:HeartbeatS",
    };

    private static readonly HashSet<string> Known = new(KnownKeys, StringComparer.OrdinalIgnoreCase);
    private static readonly string[] SectionNames = KnownKeys.Where(k => k.Contains(':')).Select(k => k[..k.IndexOf(':')]).Distinct().ToArray();
    private static readonly HashSet<string> Sections = new(SectionNames, StringComparer.OrdinalIgnoreCase);

    /// <param name="flags">Command-line values by key path (e.g. "Storage:Strategy"); null values are not given.</param>
    public static ServerOptions Load(string? configFile, IReadOnlyDictionary<string, string?> flags)
    {
        // Flag keys are written in code, not by users: a wrong one is a bug to catch on the first run.
        foreach (var key in flags.Keys)
            if (!Known.Contains(key)) throw new ArgumentException($"'{key}' is not an option key (known: {string.Join(", ", KnownKeys)})", nameof(flags));

        var builder = new ConfigurationBuilder();
        if (configFile is not null)
        {
            if (!File.Exists(configFile)) throw new FileNotFoundException($"config file {configFile} does not exist");
            builder.AddInMemoryCollection(ReadFile(Path.GetFullPath(configFile)));
        }
        else
        {
            var dataDir = flags.GetValueOrDefault(nameof(ServerOptions.DataDir))
                          ?? Environment.GetEnvironmentVariable("FORKBOX_DATADIR") ?? new ServerOptions().DataDir;
            var file = Path.Combine(dataDir, "config.json");
            if (File.Exists(file)) builder.AddInMemoryCollection(ReadFile(file));
        }
        builder.AddInMemoryCollection(Unflatten(new ConfigurationBuilder().AddEnvironmentVariables("FORKBOX_").Build().AsEnumerable()));
        builder.AddInMemoryCollection(flags.Where(kv => kv.Value is not null));
        var options = builder.Build().Get<ServerOptions>(o => o.ErrorOnUnknownConfiguration = false) ?? new ServerOptions();
        options.Validate();
        return options;
    }

    /// <summary>The file's settings by path, flat keys moved to their sections; refuses a key that names no setting.</summary>
    private static Dictionary<string, string?> ReadFile(string file)
    {
        var entries = new ConfigurationBuilder().AddJsonFile(file, optional: false).Build().AsEnumerable().ToList();
        var unknown = new List<string>();
        foreach (var (key, value) in entries)
        {
            if (Known.Contains(key)) continue;
            if (value is null)
            {
                // An object: a section, or something whose children are reported ({"Spaces": {"Bogus": 1}} names Spaces.Bogus).
                if (Sections.Contains(key) || entries.Any(e => IsUnder(e.Key, key))) continue;
            }
            else if (FlatKeys.ContainsKey(key)) continue;
            unknown.Add(Describe(key, value));
        }
        if (unknown.Count > 0)
            throw new InvalidDataException($"config file {file}: {string.Join("; ", unknown.Order(StringComparer.OrdinalIgnoreCase))}");
        return Unflatten(entries);
    }

    private static bool IsUnder(string key, string section) => key.StartsWith(section + ":", StringComparison.OrdinalIgnoreCase);

    /// <summary>Flat keys first, then paths, so that a file or environment naming both keeps the path's value.</summary>
    private static Dictionary<string, string?> Unflatten(IEnumerable<KeyValuePair<string, string?>> entries)
    {
        var result = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var list = entries.Where(e => e.Value is not null).ToList();
        foreach (var (key, value) in list)
            if (FlatKeys.TryGetValue(key, out var path)) result[path] = value;
        foreach (var (key, value) in list)
            if (!FlatKeys.ContainsKey(key)) result[key] = value;
        return result;
    }

    /// <summary>What is wrong with one key, in the file's dotted form, with the nearest known key when there is one.</summary>
    private static string Describe(string key, string? value)
    {
        var dotted = key.Replace(':', '.');
        if (value is not null && Sections.Contains(key))
            return $"'{dotted}' is a section, not a setting: its keys are " +
                   string.Join(", ", KnownKeys.Where(k => IsUnder(k, key)).Select(k => k[(key.Length + 1)..]));
        return Nearest(key) is { } near
            ? $"unknown key '{dotted}' (did you mean '{near.Replace(':', '.')}'?)"
            : $"unknown key '{dotted}' (settings are {string.Join(", ", KnownKeys.Where(k => !k.Contains(':')))} and the sections " +
              $"{string.Join(", ", SectionNames)}; see the README's Configuration)";
    }

    /// <summary>
    /// The known key closest to a mistyped one: by edit distance against each setting's path, its
    /// name alone (a setting in the wrong section) and its old flat name; none if all are far.
    /// </summary>
    private static string? Nearest(string key)
    {
        var name = key[(key.LastIndexOf(':') + 1)..];
        string? best = null;
        var bestDistance = int.MaxValue;
        void Consider(string candidate, string text, string typed)
        {
            if (Spelling.TypoDistance(typed, text) is { } d && d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        foreach (var path in KnownKeys)
        {
            Consider(path, path, key);
            Consider(path, path[(path.LastIndexOf(':') + 1)..], name);
        }
        foreach (var (flat, path) in FlatKeys) Consider(path, flat, name);
        return best;
    }

    /// <summary>The settable properties of an options type; a property of a record type is a section, one level deep.</summary>
    private static IEnumerable<string> Leaves(Type type, string prefix)
    {
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.SetMethod is not { IsPublic: true }) continue;
            var t = p.PropertyType;
            if (t.IsClass && t != typeof(string))
                foreach (var leaf in Leaves(t, prefix + p.Name + ":")) yield return leaf;
            else
                yield return prefix + p.Name;
        }
    }
}
