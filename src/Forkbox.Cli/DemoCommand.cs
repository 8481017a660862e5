using System.CommandLine;
using System.Text;
using Forkbox.Client;

namespace Forkbox.Cli;

/// <summary>`forkbox demo`: the README's tour: state across calls, a shell command, a file round trip, fork and merge_into, hibernate and resume.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();
        var cmd = new Command("demo", "Create a sandbox, run code twice to show state, run a shell command, move a file, fork it three ways, merge the best fork back, close it; then hibernate a persistent one and resume it.") { host, apiKey };
        cmd.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var client = new ForkboxClient(parse.GetValue(host), parse.GetValue(apiKey));
            await using var sb = await Sandbox.CreateAsync(client: client, ct: ct);
            Console.WriteLine($"created {sb.Id} in {sb.Info.TimingsMs?["total"]:F1} ms (server side)");

            await Step("python: x = 41", () => sb.RunCodeAsync("x = 41", ct: ct));
            var r = await Step("python: print(x + 1)", () => sb.RunCodeAsync("print(x + 1)", ct: ct));
            Console.WriteLine($"    stdout: {r.Stdout}   <- x survived between calls");
            r = await Step("bash: uname -n; id -u; ls /", () => sb.ExecAsync("uname -n; id -u; ls /", ct: ct));
            foreach (var line in r.StdoutLines) Console.WriteLine($"    {line}");

            var text = Encoding.UTF8.GetBytes("hello from the host\n");
            await sb.UploadAsync("/root/hello.txt", text, ct);
            var back = await sb.DownloadAsync("/root/hello.txt", ct);
            Console.WriteLine($"upload + download /root/hello.txt: {(back.AsSpan().SequenceEqual(text) ? "identical" : "DIFFERENT")}");
            r = await Step("python: open('/root/hello.txt').read()", () => sb.RunCodeAsync("open('/root/hello.txt').read()", ct: ct));
            Console.WriteLine($"    result: {r.Result?.GetRawText()}");

            // Fork three ways, try a different plan in each, keep the best.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var forks = await sb.ForkAsync(3, ct);
            Console.WriteLine($"fork(3): {string.Join(", ", forks.Select(f => f.Id))} in {clock.Elapsed.TotalMilliseconds:F1} ms; each starts with x = 41");
            var scores = new List<long>();
            for (var i = 0; i < forks.Count; i++)
            {
                r = await forks[i].RunCodeAsync($"x = x * {i + 2}\nx", ct: ct);
                scores.Add(r.Result!.Value.GetInt64());
                Console.WriteLine($"    {forks[i].Id}: x * {i + 2} = {scores[i]}");
            }
            var best = scores.IndexOf(scores.Max());
            await sb.MergeIntoAsync(forks[best], ct);
            foreach (var loser in forks.Where((_, i) => i != best)) await loser.CloseAsync(ct);
            r = await sb.RunCodeAsync("x", ct: ct);
            Console.WriteLine($"merge_into: {sb.Id} now has the best fork's state: x = {r.Result?.GetRawText()}");

            await sb.CloseAsync(ct);
            Console.WriteLine($"closed {sb.Id}");

            // A Space: hibernated to disk, memory freed, and back with its variables and files.
            await using var space = await Sandbox.CreateAsync(new() { Persistent = true }, client, ct);
            await space.RunCodeAsync("import json\nnotes = {'step': 1}\ndef bump():\n    notes['step'] += 1\n    return notes", ct: ct);
            await space.UploadAsync("/root/notes.txt", text, ct);
            var h = await space.HibernateAsync(ct);
            Console.WriteLine($"hibernate {space.Id}: {h.Bytes} bytes on disk, {h.MemoryFreedBytes / 1048576.0:F1} MiB of memory freed, in {h.TimingsMs?["total"]:F1} ms; saved {string.Join(", ", h.Saved ?? [])}");
            r = await space.RunCodeAsync("json.dumps(bump()) + ' ' + open('/root/notes.txt').read().strip()", ct: ct);
            Console.WriteLine($"run_code on the hibernated sandbox resumed it: {r.Result?.GetRawText()}");
            await space.CloseAsync(ct);
        }));
        return cmd;
    }

    private static async Task<Execution> Step(string what, Func<Task<Execution>> call)
    {
        var r = await call();
        Console.WriteLine($"{what}  (exit {r.ExitCode}, {r.Duration.TotalMilliseconds:F1} ms)");
        return r;
    }
}
