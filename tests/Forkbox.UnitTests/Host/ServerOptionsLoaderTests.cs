using Forkbox.Core.Errors;
using Forkbox.Host;

namespace Forkbox.UnitTests.Host;

/// <remarks>Tests here set FORKBOX_* variables; xunit runs one class's tests one at a time, and no other class loads options.</remarks>
[Trait("Root", "not needed")]
public sealed class ServerOptionsLoaderTests_without_root : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("forkbox-options-").FullName;
    private readonly List<string> _variables = [];

    public void Dispose()
    {
        foreach (var name in _variables) Environment.SetEnvironmentVariable(name, null);
        Directory.Delete(_dir, recursive: true);
    }

    private string ConfigFile(string json)
    {
        var file = Path.Combine(_dir, "forkbox.json");
        File.WriteAllText(file, json);
        return file;
    }

    private void Set(string variable, string value)
    {
        _variables.Add(variable);
        Environment.SetEnvironmentVariable(variable, value);
    }

    private Dictionary<string, string?> Flags(params (string Key, string? Value)[] more)
    {
        var flags = new Dictionary<string, string?> { ["DataDir"] = _dir };
        foreach (var (key, value) in more) flags[key] = value;
        return flags;
    }

    [Fact]
    public void Nested_keys_in_the_file_set_their_sections_without_regard_to_case()
    {
        var file = ConfigFile("""
            {
              "Listen": "127.0.0.1:7193",
              "Spaces": { "PauseAfterS": 60, "HibernateOnShutdown": false },
              "pool": { "size": 3, "EgressSize": 0 },
              "Storage": { "Strategy": "copy", "ImageBytes": 1073741824 },
              "Network": { "Subnet": "10.9.0.0/16", "Dns": "1.1.1.1" },
              "Cluster": { "Region": "eu-west" }
            }
            """);

        var options = ServerOptionsLoader.Load(file, Flags());

        Assert.Equal("127.0.0.1:7193", options.Listen);
        Assert.Equal(60, options.Spaces.PauseAfterS);
        Assert.False(options.Spaces.HibernateOnShutdown);
        Assert.Equal(1800, options.Spaces.HibernateAfterS);
        Assert.Equal((3, 0), (options.Pool.Size, options.Pool.EgressSize));
        Assert.Equal(("copy", 1L << 30), (options.Storage.Strategy, options.Storage.ImageBytes));
        Assert.Equal(("10.9.0.0/16", "1.1.1.1"), (options.Network.Subnet, options.Network.Dns));
        Assert.Equal("eu-west", options.Cluster.Region);
        Assert.Equal(500, options.Limits.MaxSandboxes);
    }

    [Fact]
    public void The_data_directorys_config_json_is_read_when_no_file_is_named()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{ "Limits": { "MaxSandboxes": 70 } }""");

        Assert.Equal(70, ServerOptionsLoader.Load(null, Flags()).Limits.MaxSandboxes);
    }

    [Fact]
    public void Flat_keys_of_before_are_read_as_their_new_paths_and_a_nested_key_wins_over_one()
    {
        var file = ConfigFile("""
            { "PoolSize": 3, "Storage": "reflink", "NetworkSubnet": "10.9.0.0/16", "ForkWaitS": 2,
              "MaxSandboxes": 10, "Limits": { "MaxSandboxes": 20 } }
            """);

        var options = ServerOptionsLoader.Load(file, Flags());

        Assert.Equal(3, options.Pool.Size);
        Assert.Equal("reflink", options.Storage.Strategy);
        Assert.Equal("10.9.0.0/16", options.Network.Subnet);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Forks.Wait);
        Assert.Equal(20, options.Limits.MaxSandboxes);
    }

    [Fact]
    public void Every_setting_in_a_section_has_its_flat_key_of_before()
    {
        var inSections = ServerOptionsLoader.KnownKeys.Where(k => k.Contains(':')).Order().ToList();
        Assert.Equal(inSections, ServerOptionsLoader.FlatKeys.Values.Order().ToList());
        Assert.Equal(["Listen", "DataDir", "Keys", "Python"], ServerOptionsLoader.KnownKeys.Where(k => !k.Contains(':')));
    }

    [Theory]
    [InlineData("""{ "Spaces": { "PauseAftrS": 60 } }""", "unknown key 'Spaces.PauseAftrS' (did you mean 'Spaces.PauseAfterS'?)")]
    [InlineData("""{ "Pool": { "PauseAfterS": 60 } }""", "unknown key 'Pool.PauseAfterS' (did you mean 'Spaces.PauseAfterS'?)")]
    [InlineData("""{ "Spaces": { "PoolSize": 2 } }""", "unknown key 'Spaces.PoolSize' (did you mean 'Pool.Size'?)")]
    [InlineData("""{ "maxsandbox": 2 }""", "unknown key 'maxsandbox' (did you mean 'Limits.MaxSandboxes'?)")]
    [InlineData("""{ "Frobnicate": true }""", "unknown key 'Frobnicate' (settings are Listen, DataDir, Keys, Python and the sections Limits, Pool, Forks, Spaces, Storage, Isolation, Network, Ports, Cluster;")]
    [InlineData("""{ "Pool": 4 }""", "'Pool' is a section, not a setting: its keys are Size, EgressSize")]
    public void An_unknown_key_in_the_file_is_refused_naming_it_the_file_and_the_nearest_key(string json, string message)
    {
        var file = ConfigFile(json);

        var e = Assert.Throws<InvalidDataException>(() => ServerOptionsLoader.Load(file, Flags()));

        Assert.StartsWith($"config file {file}: ", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Every_unknown_key_is_named_at_once()
    {
        var file = ConfigFile("""{ "Limits": { "MaxCpu": 4, "PidLimit": 64 }, "Listen": "127.0.0.1:7070" }""");

        var e = Assert.Throws<InvalidDataException>(() => ServerOptionsLoader.Load(file, Flags()));

        Assert.Contains("'Limits.MaxCpu' (did you mean 'Limits.MaxCpus'?)", e.Message);
        Assert.Contains("'Limits.PidLimit' (did you mean 'Limits.PidsLimit'?)", e.Message);
    }

    [Fact]
    public void Flags_override_the_environment_which_overrides_the_file()
    {
        var file = ConfigFile("""{ "Storage": { "Strategy": "copy" }, "Cluster": { "Region": "eu" }, "Spaces": { "PauseAfterS": 1 } }""");
        Set("FORKBOX_SPACES__PAUSEAFTERS", "42");
        Set("FORKBOX_CLUSTER__REGION", "us");

        var options = ServerOptionsLoader.Load(file, Flags(("Storage:Strategy", "reflink"), ("Cluster:Region", "ap")));

        Assert.Equal("reflink", options.Storage.Strategy);
        Assert.Equal("ap", options.Cluster.Region);
        Assert.Equal(42, options.Spaces.PauseAfterS);
    }

    [Fact]
    public void Environment_variables_that_name_no_setting_are_ignored_and_flat_ones_still_read()
    {
        Set("FORKBOX_NOT_AN_OPTION", "1");
        Set("FORKBOX_SPACES__NOT_EITHER", "1");
        Set("FORKBOX_POOLSIZE", "5");

        Assert.Equal(5, ServerOptionsLoader.Load(null, Flags()).Pool.Size);
    }

    [Fact]
    public void A_flag_key_that_names_no_setting_is_a_bug_caught_at_load()
    {
        var e = Assert.Throws<ArgumentException>(() => ServerOptionsLoader.Load(null, Flags(("PoolSize", "1"))));
        Assert.Contains("'PoolSize' is not an option key", e.Message);
    }

    [Theory]
    [InlineData("""{ "Limits": { "PidsLimit": 4 } }""", "invalid configuration: pids_limit must be at least 8")]
    [InlineData("""{ "Pool": { "Size": 600 } }""", "invalid configuration: pool_size must be between 0 and max_sandboxes")]
    [InlineData("""{ "Storage": { "Strategy": "zfs" } }""", "invalid configuration: storage 'zfs' must be auto, btrfs, reflink or copy")]
    [InlineData("""{ "Network": { "Subnet": "10.0.0.0/30" } }""", "invalid configuration: network_subnet '10.0.0.0/30' must be an IPv4 network between /8 and /29 (e.g. 10.201.0.0/16)")]
    [InlineData("""{ "Cluster": { "Join": "redis:6379" } }""", "invalid configuration: join needs a host_id: the name this host has in the cluster (e.g. --host-id eu-1)")]
    [InlineData("""{ "Forks": { "WaitS": -1 } }""", "invalid configuration: fork_wait_s must be between 0 and 3600")]
    public void Validation_messages_are_those_of_before(string json, string message)
    {
        var file = ConfigFile(json);

        var e = Assert.Throws<BadRequestException>(() => ServerOptionsLoader.Load(file, Flags()));

        Assert.Equal(message, e.Message);
    }
}
