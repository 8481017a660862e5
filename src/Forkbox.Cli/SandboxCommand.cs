using System.CommandLine;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.Cli;

/// <summary>`forkbox sandbox create|list|exec|fork|merge|diff|pause|hibernate|resume|rm`: the API from the shell.</summary>
internal static class SandboxCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();

        var template = new Option<string?>("--template") { Description = "Template name (default: default)" };
        var persistent = new Option<bool>("--persistent") { Description = "A Space: never expires; pauses, then hibernates, when idle; survives a server restart" };
        var name = new Option<string?>("--name") { Description = "A name for a persistent sandbox, unique per API key (find it with `list --name`)" };
        var create = new Command("create", "Create a sandbox and print its id.") { host, apiKey, template, persistent, name };
        create.SetAction(async (parse, ct) => await Run(async () =>
        {
            var sb = await Sandbox.CreateAsync(new CreateSandboxRequest
            {
                Template = parse.GetValue(template),
                Persistent = parse.GetValue(persistent) ? true : null,
                Name = parse.GetValue(name),
            }, Client(parse, host, apiKey), ct);
            Console.WriteLine(sb.Id);
        }));

        var listName = new Option<string?>("--name") { Description = "Only the sandbox with this name" };
        var list = new Command("list", "List sandboxes as JSON.") { host, apiKey, listName };
        list.SetAction(async (parse, ct) => await Run(async () =>
        {
            var all = await Client(parse, host, apiKey).ListSandboxesAsync(parse.GetValue(listName), ct);
            Console.WriteLine(JsonSerializer.Serialize(all, WireJson.Default.SandboxList));
        }));

        var id = new Argument<string>("id") { Description = "Sandbox id (sbx_…)" };
        var code = new Argument<string>("code") { Description = "Python code, or a shell command with --bash" };
        var bash = new Option<bool>("--bash") { Description = "Run CODE with bash instead of the Python REPL" };
        var exec = new Command("exec", "Run code in a sandbox, streaming its output; exits with its exit code.") { host, apiKey, id, code, bash };
        exec.SetAction(async (parse, ct) =>
        {
            var exitCode = 0;
            var rc = await Run(async () =>
            {
                var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host, apiKey), ct);
                var req = new ExecRequest { Code = parse.GetValue(code), Language = parse.GetValue(bash) ? "bash" : "python", Rich = true };
                var result = await sb.RunAsync(req, Console.Out.WriteLine, Console.Error.WriteLine, ct);
                if (result.Result is { } value) Console.WriteLine(value.GetRawText());
                exitCode = result.ExitCode;
            });
            return rc != 0 ? rc : exitCode;
        });

        var rm = new Command("rm", "Close (destroy) a sandbox.") { host, apiKey, id };
        rm.SetAction(async (parse, ct) => await Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host, apiKey), ct);
            await sb.CloseAsync(ct);
        }));

        var n = new Option<int>("-n") { Description = "How many forks (1 to 32)", DefaultValueFactory = _ => 1 };
        var fork = new Command("fork", "Fork a sandbox n ways; prints the forks' ids, one per line.") { host, apiKey, id, n };
        fork.SetAction(async (parse, ct) => await Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host, apiKey), ct);
            foreach (var child in await sb.ForkAsync(parse.GetValue(n), ct)) Console.WriteLine(child.Id);
        }));

        var winner = new Argument<string>("winner") { Description = "A fork of ID (or of one of its forks) that takes ID's place" };
        var merge = new Command("merge", "merge_into: WINNER takes over ID (memory and files); ID's former sandbox is closed.") { host, apiKey, id, winner };
        merge.SetAction(async (parse, ct) => await Run(async () =>
        {
            var client = Client(parse, host, apiKey);
            var target = await Sandbox.ConnectAsync(parse.GetValue(id)!, client, ct);
            await target.MergeIntoAsync(await Sandbox.ConnectAsync(parse.GetValue(winner)!, client, ct), ct);
        }));

        var other = new Argument<string>("other") { Description = "The sandbox to compare with" };
        var paths = new Option<string[]>("--path") { Description = "A directory to compare (repeatable; default /root and /tmp)" };
        var diff = new Command("diff", "List the files OTHER added, removed and changed relative to ID.") { host, apiKey, id, other, paths };
        diff.SetAction(async (parse, ct) => await Run(async () =>
        {
            var client = Client(parse, host, apiKey);
            var a = await Sandbox.ConnectAsync(parse.GetValue(id)!, client, ct);
            var chosen = parse.GetValue(paths);
            var d = await a.DiffAsync(await Sandbox.ConnectAsync(parse.GetValue(other)!, client, ct), chosen is { Length: > 0 } ? chosen : null, ct);
            foreach (var (mark, list) in new[] { ("+", d.Added), ("-", d.Removed), ("~", d.Changed) })
                foreach (var path in list) Console.WriteLine($"{mark} {path}");
        }));

        Command Lifecycle(string verb, string description, Func<Sandbox, CancellationToken, Task<LifecycleResponse>> call)
        {
            var command = new Command(verb, description) { host, apiKey, id };
            command.SetAction(async (parse, ct) => await Run(async () =>
            {
                var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host, apiKey), ct);
                Console.WriteLine(JsonSerializer.Serialize(await call(sb, ct), WireJson.Default.LifecycleResponse));
            }));
            return command;
        }
        var pause = Lifecycle("pause", "Freeze every process of a sandbox; memory stays. Any call resumes it.", (sb, ct) => sb.PauseAsync(ct));
        var hibernate = Lifecycle("hibernate", "Write a sandbox to disk (files and REPL globals) and free its memory.", (sb, ct) => sb.HibernateAsync(ct));
        var resume = Lifecycle("resume", "Bring a paused or hibernated sandbox back; prints what was restored and what was not.", (sb, ct) => sb.ResumeAsync(ct));

        return new Command("sandbox", "Create, use, fork, freeze and close sandboxes.") { create, list, exec, fork, merge, diff, pause, hibernate, resume, rm };
    }

    private static ForkboxClient Client(ParseResult parse, Option<string?> host, Option<string?> apiKey) =>
        new(parse.GetValue(host), parse.GetValue(apiKey));

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
