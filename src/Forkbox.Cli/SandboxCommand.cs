using System.CommandLine;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.Cli;

/// <summary>`forkbox sandbox create|list|exec|files|fork|merge|diff|pause|hibernate|resume|rm`: the API from the shell.</summary>
internal static class SandboxCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();

        var template = new Option<string?>("--template") { Description = "Template name (default: default)" };
        var timeout = new Option<double?>("--timeout") { HelpName = "SECONDS", Description = "Seconds until the sandbox is closed (timeout_s; default: the server's)" };
        var memory = new Option<int?>("--memory") { HelpName = "MB", Description = "Memory limit in MB (memory_mb)" };
        var cpus = new Option<double?>("--cpus") { Description = "CPU limit, in cores (0.5 is half a core)" };
        var env = new Option<string[]>("--env", "-e") { HelpName = "KEY=VALUE", Description = "An environment variable for its code (repeatable)" };
        env.Validators.Add(r =>
        {
            foreach (var t in r.Tokens)
                if (t.Value.IndexOf('=') <= 0) r.AddError($"--env wants KEY=VALUE, got '{t.Value}'");
        });
        var network = new Option<string?>("--network") { HelpName = "MODE", Description = "none (loopback only, the default) or egress (its own address, NAT through the host)" };
        var persistent = new Option<bool>("--persistent") { Description = "A Space: never expires; pauses, then hibernates, when idle; survives a server restart" };
        var name = new Option<string?>("--name") { Description = "A name for a persistent sandbox, unique per API key (find it with `list --name`)" };
        var create = new Command("create", "Create a sandbox and print its id.") { host, apiKey, template, timeout, memory, cpus, env, network, persistent, name };
        create.SetAction(async (parse, ct) => await Run(async () =>
        {
            var vars = parse.GetValue(env) is { Length: > 0 } pairs
                ? pairs.Select(p => p.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1])
                : null;
            var sb = await Sandbox.CreateAsync(new CreateSandboxRequest
            {
                Template = parse.GetValue(template),
                TimeoutS = parse.GetValue(timeout),
                MemoryMb = parse.GetValue(memory),
                Cpus = parse.GetValue(cpus),
                Env = vars,
                Network = parse.GetValue(network),
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
        var code = new Argument<string?>("code")
        {
            Description = "Python code, or a shell command with --bash; - reads it from stdin",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var file = new Option<string?>("--file", "-f") { HelpName = "PATH", Description = "Read the code from this file instead of CODE (- for stdin)" };
        var bash = new Option<bool>("--bash") { Description = "Run CODE with bash instead of the Python REPL" };
        var execTimeout = new Option<double?>("--timeout") { HelpName = "SECONDS", Description = "Seconds the call may run (default: the server's, 300)" };
        var exec = new Command("exec", "Run code in a sandbox, streaming its output; exits with its exit code.") { host, apiKey, id, code, file, bash, execTimeout };
        exec.Validators.Add(r =>
        {
            if (r.GetResult(id) is not { Tokens.Count: > 0 }) return; // ParseErrors names what is missing
            var hasCode = r.GetResult(code) is { Tokens.Count: > 0 };
            var hasFile = r.GetResult(file) is not null;
            if (hasCode && hasFile) r.AddError("give the code either as CODE or with --file PATH, not both");
            else if (!hasCode && !hasFile) r.AddError("missing the code to run: give it as CODE, with --file PATH, or as - to read it from stdin");
        });
        exec.SetAction(async (parse, ct) =>
        {
            var exitCode = 0;
            var rc = await Run(async () =>
            {
                var source = parse.GetValue(file) ?? parse.GetValue(code)!;
                var text = parse.GetValue(file) is { } path
                    ? path == "-" ? await Console.In.ReadToEndAsync(ct) : await File.ReadAllTextAsync(path, ct)
                    : source == "-" ? await Console.In.ReadToEndAsync(ct) : source;
                var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, Client(parse, host, apiKey), ct);
                var req = new ExecRequest
                {
                    Code = text,
                    Language = parse.GetValue(bash) ? "bash" : "python",
                    TimeoutS = parse.GetValue(execTimeout),
                    Rich = true,
                };
                var result = await sb.RunAsync(req, Console.Out.WriteLine, Console.Error.WriteLine, ct);
                if (result.Result is { } value) Console.WriteLine(value.GetRawText());
                exitCode = result.ExitCode;
            });
            return rc != 0 ? rc : exitCode;
        });

        var rm = new Command("rm", "Close (destroy) a sandbox; one already gone is not an error.") { host, apiKey, id };
        rm.SetAction(async (parse, ct) => await Run(async () =>
        {
            var gone = parse.GetValue(id)!;
            if (!await Client(parse, host, apiKey).DeleteSandboxAsync(gone, ct))
                Console.Error.WriteLine($"forkbox: {gone} was already gone (no such sandbox for this key)");
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

        return new Command("sandbox", "Create, use, fork, freeze and close sandboxes.") { create, list, exec, SandboxFilesCommand.Create(), fork, merge, diff, pause, hibernate, resume, rm };
    }

    internal static ForkboxClient Client(ParseResult parse, Option<string?> host, Option<string?> apiKey) =>
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
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
