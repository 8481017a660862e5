using System.CommandLine;
using Forkbox.Host;
using Forkbox.Host.Auth;

namespace Forkbox.Cli;

/// <summary>`forkbox keys create`: make an API key; the server requires keys once one exists.</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var name = new Option<string>("--name") { Description = "A label for the key", DefaultValueFactory = _ => "default" };
        var dataDir = CommonOptions.DataDir();
        var config = CommonOptions.Config();
        var create = new Command("create", "Create an API key and print it (it is shown only once).") { name, dataDir, config };
        create.SetAction(parse =>
        {
            var options = ServerOptionsLoader.Load(parse.GetValue(config), new Dictionary<string, string?>
            {
                [nameof(Forkbox.Core.ServerOptions.DataDir)] = parse.GetValue(dataDir),
            });
            var key = new ApiKeyStore(options.KeysFile).Create(parse.GetValue(name)!);
            Console.WriteLine(key);
            Console.Error.WriteLine($"stored its hash in {options.KeysFile}; clients send it as 'Authorization: Bearer {key[..8]}…'");
            return 0;
        });
        return new Command("keys", "Manage API keys.") { create };
    }
}
