// The C# example of README.md ("C# SDK"): the integration tests check that the README shows the
// lines between the markers, as they are here, and run this method against a real server.
using System.Text;
using Forkbox.Client;

namespace Forkbox.Examples;

public static class ReadmeExample
{
    public static async Task<long> RunAsync(ForkboxClient client)
    {
        // README begin
        await using var sb = await Sandbox.CreateAsync(new() { MemoryMb = 512 }, client);
        await sb.RunCodeAsync("x = 41");
        var r = await sb.RunCodeAsync("print(x + 1)", onStdout: line => Console.WriteLine($"stdout: {line}"));
        var sh = await sb.ExecAsync("ls /root", timeoutS: 10);                     // sh.ExitCode, sh.StdoutLines
        await sb.UploadAsync("/root/data.csv", Encoding.UTF8.GetBytes("a,b\n1,2\n"));
        var back = await sb.DownloadAsync("/root/data.csv");
        await foreach (var ev in sb.StreamAsync(new() { Code = "import time\nfor i in range(3): print(i); time.sleep(0.1)" }))
            Console.WriteLine($"{ev.Type}: {ev.Data}");

        // Fork three ways, keep the best, close the rest.
        var forks = await sb.ForkAsync(3);
        var scores = await Task.WhenAll(forks.Select((f, i) => f.RunCodeAsync($"x = x * {i + 2}\nx")));
        var best = forks[Array.IndexOf(scores, scores.MaxBy(s => s.Result!.Value.GetInt64()))];
        await sb.MergeIntoAsync(best);                                            // sb's id now has best's state
        foreach (var f in forks.Where(f => f != best)) await f.CloseAsync();

        var failed = await sb.RunCodeAsync("1/0");                                // failed.Error!.Name == "ZeroDivisionError"
        try
        {
            await Sandbox.ConnectAsync("sbx_00000000000000000000000000000000", client);
        }
        catch (ForkboxNotFoundException e)                                        // one exception type per status
        {
            Console.WriteLine($"as expected: {e.ServerMessage}");
        }

        // A Space: hibernated to disk and back, with its variables and files.
        await using var space = await Sandbox.CreateAsync(new() { Persistent = true }, client);
        await space.RunCodeAsync("notes = ['kept']");
        var saved = await space.HibernateAsync();                                 // saved.Saved, saved.Bytes, saved.NotRestored
        var resumed = await space.ResumeAsync();                                  // resumed.Restored, resumed.TimingsMs
        return (await sb.RunCodeAsync("x")).Result!.Value.GetInt64();            // 164
        // README end
    }
}
