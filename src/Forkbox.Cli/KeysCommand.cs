using System.CommandLine;
using Forkbox.Host;
using Forkbox.Hosting.Auth;

namespace Forkbox.Cli;

/// <summary>`forkbox keys create`: make an API key; the server requires keys once one exists.</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var name = new Option<string>("--name") { Description = "A label for the key", DefaultValueFactory = _ => "default" };
        var tier = new Option<string?>("--tier") { Description = "The tier whose limits an edge applies to this key (see `forkbox edge --tiers`)" };
        var admin = new Option<bool>("--admin") { Description = "An admin key: may also size pools, delete templates and read /metrics (server-wide settings)" };
        var dataDir = CommonOptions.DataDir();
        var config = CommonOptions.Config();
        var keys = CommonOptions.Keys();
        var create = new Command("create", "Create an API key and print it (it is shown only once).") { name, tier, admin, dataDir, config, keys };
        create.SetAction(parse =>
        {
            var options = CommonOptions.LoadServerOptions("keys create", parse.GetValue(config), new Dictionary<string, string?>
            {
                [nameof(Forkbox.Core.ServerOptions.DataDir)] = parse.GetValue(dataDir),
                [nameof(Forkbox.Core.ServerOptions.Keys)] = parse.GetValue(keys) is { } k ? Path.GetFullPath(k) : null,
            });
            if (options is null) return 2;
            var key = new ApiKeyStore(options.KeysFile).Create(parse.GetValue(name)!, parse.GetValue(tier), parse.GetValue(admin));
            Console.WriteLine(key);
            Console.Error.WriteLine($"stored its hash in {options.KeysFile}; clients send it as 'Authorization: Bearer {key[..8]}…'");
            return 0;
        });
        return new Command("keys", "Manage API keys.") { create };
    }
}
