using System.CommandLine;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host;
using Forkbox.Host.Templates;

namespace Forkbox.Cli;

/// <summary>`forkbox template build|list|rm`.</summary>
internal static class TemplateCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "Template name: a-z, 0-9 and '-'" };
        var from = new Option<string>("--from") { Description = "debootstrap, a directory, or a tarball holding a root filesystem with python3", Required = true };
        var packages = new Option<string?>("--packages") { Description = "Comma-separated Debian packages to include (with --from debootstrap)" };
        var preload = new Option<string?>("--preload") { Description = "Comma-separated modules its zygote imports before forking" };
        var dataDir = CommonOptions.DataDir();
        var config = CommonOptions.Config();
        var build = new Command("build", "Build a template into the server's data directory (as root); a running server picks it up.")
            { name, from, packages, preload, dataDir, config };
        build.SetAction(async (parse, ct) =>
        {
            var options = CommonOptions.LoadServerOptions("template build", parse.GetValue(config), new Dictionary<string, string?>
            {
                [nameof(Forkbox.Core.ServerOptions.DataDir)] = parse.GetValue(dataDir),
            });
            if (options is null) return 2;
            static string[] List(string? s) => s?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
            try
            {
                await TemplateBuilder.BuildAsync(options, parse.GetValue(name)!, parse.GetValue(from)!, List(parse.GetValue(packages)),
                    List(parse.GetValue(preload)), line => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"), ct);
                return 0;
            }
            catch (ForkboxException e)
            {
                Console.Error.WriteLine($"forkbox template build: {e.Message}");
                return 1;
            }
        });

        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();
        var list = new Command("list", "List the server's templates with size and pool state, as JSON.") { host, apiKey };
        list.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
            Console.WriteLine(JsonSerializer.Serialize(await new ForkboxClient(parse.GetValue(host), parse.GetValue(apiKey)).ListTemplatesAsync(ct), WireJson.Default.TemplateList))));

        var rmName = new Argument<string>("name") { Description = "Template to delete (not built-in, not in use)" };
        var rm = new Command("rm", "Delete a built template that no sandbox uses.") { host, apiKey, rmName };
        rm.SetAction(async (parse, ct) => await SandboxCommand.Run(() =>
            new ForkboxClient(parse.GetValue(host), parse.GetValue(apiKey)).DeleteTemplateAsync(parse.GetValue(rmName)!, ct)));

        return new Command("template", "Build, list and delete templates.") { build, list, rm };
    }
}
