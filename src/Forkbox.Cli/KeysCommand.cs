using System.CommandLine;
using Forkbox.Core;
using Forkbox.Hosting.Auth;

namespace Forkbox.Cli;

/// <summary>`forkbox keys create|list|revoke`: the API keys file; the server requires keys once one exists.</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var name = new Option<string>("--name") { Description = "A label for the key, unique in the keys file (the owner of what the key creates)", DefaultValueFactory = _ => "default" };
        var tier = new Option<string?>("--tier") { Description = "The tier whose limits an edge applies to this key (see `forkbox edge --tiers`)" };
        var admin = new Option<bool>("--admin") { Description = "An admin key: may also size pools, delete templates and read /metrics (server-wide settings)" };
        var adoptLocal = new Option<bool>("--adopt-local")
        {
            Description = "The key becomes the owner of the sandboxes and Spaces made while there were no keys (no key could reach them otherwise)",
        };
        var (dataDir, config, keys) = (CommonOptions.DataDir(), CommonOptions.Config(), CommonOptions.Keys());
        var create = new Command("create", "Create an API key and print it (it is shown only once).") { name, tier, admin, adoptLocal, dataDir, config, keys };
        create.SetAction(parse => WithStore(parse, "keys create", dataDir, config, keys, (store, options) =>
        {
            var adopt = parse.GetValue(adoptLocal);
            var key = store.Create(parse.GetValue(name)!, parse.GetValue(tier), parse.GetValue(admin), adopt);
            Console.WriteLine(key);
            Console.Error.WriteLine($"stored its hash in {options.KeysFile}; clients send it as 'Authorization: Bearer {key[..8]}…'");
            if (adopt)
                Console.Error.WriteLine("it owns the sandboxes made without keys: a running server hands them over within a second, a stopped one when it starts");
        }));

        var (listDataDir, listConfig, listKeys) = (CommonOptions.DataDir(), CommonOptions.Config(), CommonOptions.Keys());
        var list = new Command("list", "List the keys: name, prefix, role, tier, created (never the key itself).") { listDataDir, listConfig, listKeys };
        list.SetAction(parse => WithStore(parse, "keys list", listDataDir, listConfig, listKeys, (store, options) =>
        {
            var all = store.List();
            if (all.Count == 0) Console.Error.WriteLine($"no keys in {options.KeysFile}: a loopback server runs without auth");
            foreach (var k in all) Console.WriteLine($"{k.Name}\t{k.Prefix}\t{k.Role}\t{k.Tier ?? "-"}\t{k.CreatedAt ?? "-"}");
        }));

        var which = new Argument<string>("name") { Description = "The key's name, or its prefix (fbx_…) when names repeat" };
        var (rmDataDir, rmConfig, rmKeys) = (CommonOptions.DataDir(), CommonOptions.Config(), CommonOptions.Keys());
        var revoke = new Command("revoke", "Take a key out of the keys file; a running server refuses it within a second.") { which, rmDataDir, rmConfig, rmKeys };
        revoke.SetAction(parse => WithStore(parse, "keys revoke", rmDataDir, rmConfig, rmKeys, (store, options) =>
        {
            var gone = store.Revoke(parse.GetValue(which)!);
            Console.Error.WriteLine($"revoked key '{gone.Name}' ({gone.Prefix}…) from {options.KeysFile}");
        }));

        return new Command("keys", "Manage API keys.") { create, list, revoke };
    }

    /// <summary>Runs <paramref name="action"/> on the server's keys file; a bad config or keys file, or a refused change, is one line and exit 2.</summary>
    private static int WithStore(ParseResult parse, string command, Option<string?> dataDir, Option<string?> config, Option<string?> keys,
        Action<ApiKeyStore, ServerOptions> action)
    {
        var options = CommonOptions.LoadServerOptions(command, parse.GetValue(config), new Dictionary<string, string?>
        {
            [nameof(ServerOptions.DataDir)] = parse.GetValue(dataDir),
            [nameof(ServerOptions.Keys)] = parse.GetValue(keys) is { } k ? Path.GetFullPath(k) : null,
        });
        if (options is null) return 2;
        try
        {
            action(new ApiKeyStore(options.KeysFile), options);
            return 0;
        }
        catch (InvalidOperationException e)
        {
            Console.Error.WriteLine($"forkbox {command}: {e.Message}");
            return 2;
        }
    }
}
