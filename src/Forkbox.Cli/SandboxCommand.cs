using System.CommandLine;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.Cli;

/// <summary>`forkbox sandbox create|list|exec|rm`: the API from the shell.</summary>
internal static class SandboxCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();

        var template = new Option<string?>("--template") { Description = "Template name (default: default)" };
        var create = new Command("create", "Create a sandbox and print its id.") { host, template };
        create.SetAction(async (parse, ct) => await Run(async () =>
        {
            var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Template = parse.GetValue(template) }, Client(parse, host), ct);
            Console.WriteLine(sb.Id);
        }));

        var list = new Command("list", "List sandboxes as JSON.") { host };
        list.SetAction(async (parse, ct) => await Run(async () =>
        {
            var all = await Client(parse, host).ListSandboxesAsync(ct);
            Console.WriteLine(JsonSerializer.Serialize(all, WireJson.Default.SandboxList));
        }));

        var id = new Argument<string>("id") { Description = "Sandbox id (sbx_…)" };
        var code = new Argument<string>("code") { Description = "Python code, or a shell command with --bash" };
        var bash = new Option<bool>("--bash") { Description = "Run CODE with bash instead of the Python REPL" };
        var exec = new Command("exec", "Run code in a sandbox, streaming its output; exits with its exit code.") { host, id, code, bash };
        exec.SetAction(async (parse, ct) =>
        {
            var exitCode = 0;
            var rc = await Run(async () =>
            {
                var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host), ct);
                var req = new ExecRequest { Code = parse.GetValue(code), Language = parse.GetValue(bash) ? "bash" : "python", Rich = true };
                var result = await sb.RunAsync(req, Console.Out.WriteLine, Console.Error.WriteLine, ct);
                if (result.Result is { } value) Console.WriteLine(value.GetRawText());
                exitCode = result.ExitCode;
            });
            return rc != 0 ? rc : exitCode;
        });

        var rm = new Command("rm", "Close (destroy) a sandbox.") { host, id };
        rm.SetAction(async (parse, ct) => await Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host), ct);
            await sb.CloseAsync(ct);
        }));

        return new Command("sandbox", "Create, use and close sandboxes.") { create, list, exec, rm };
    }

    private static ForkboxClient Client(ParseResult parse, Option<string?> host) => new(parse.GetValue(host));

    /// <summary>Runs a client action; API and connection errors become one line on stderr and exit 1.</summary>
    internal static async Task<int> Run(Func<Task> action)
    {
        try
        {
            await action();
            return 0;
        }
        catch (ForkboxApiException e)
        {
            Console.Error.WriteLine($"forkbox: {e.Message}");
            return 1;
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"forkbox: cannot reach the server: {e.Message} (is `forkbox serve` running? set --host or FORKBOX_HOST)");
            return 1;
        }
    }
}
