namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>
/// Output of a process a call left running never reaches a later call: once the call that
/// started it has ended, what it writes goes to the sandbox's background log
/// (/tmp/forkbox-background.log), whole, whether a Python cell or a shell command started it.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BackgroundOutputTests(ServerFixture fx)
{
    private const string Log = "/tmp/forkbox-background.log";

    // Writes 200 numbered lines over about a second, on stdout and stderr by turns.
    private const string Writer = "for i in $(seq 1 200); do if [ $((i % 2)) = 0 ]; then echo bg-$i; else echo bg-$i >&2; fi; sleep 0.005; done";

    [Theory]
    [InlineData("python")]
    [InlineData("bash")]
    public async Task A_background_process_writes_to_its_log_not_to_a_later_call(string starter)
    {
        await using var sb = await fx.NewSandbox();
        var started = starter == "python"
            ? await sb.RunCodeAsync($"import subprocess\np = subprocess.Popen({Py(Writer)}, shell=True)\nprint('started')")
            : await sb.ExecAsync($"({Writer}) &\necho started");
        Assert.Contains("started", started.StdoutLines);

        // Later calls while it writes, in both languages: none sees a line of it.
        var later = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var py = await sb.RunCodeAsync("import time\ntime.sleep(0.05)\nprint('cell')");
            var sh = await sb.ExecAsync("sleep 0.05; echo command");
            later.AddRange(py.StdoutLines.Concat(py.StderrLines).Concat(sh.StdoutLines).Concat(sh.StderrLines));
        }
        Assert.DoesNotContain(later, l => l.StartsWith("bg-", StringComparison.Ordinal));
        Assert.Equal(10, later.Count(l => l == "cell"));
        Assert.Equal(10, later.Count(l => l == "command"));

        // All of it is in the log, none lost: the writer was not killed by a closed pipe.
        var log = "";
        for (var waited = 0; waited < 200 && !log.Contains("bg-200"); waited++)
        {
            await Task.Delay(100);
            log = await ReadLog(sb);
        }
        // What it wrote while the starting call still ran is that call's output; the rest is in the log.
        var lines = log.Split('\n', StringSplitOptions.RemoveEmptyEntries).Concat(started.StdoutLines).Concat(started.StderrLines);
        Assert.Equal(Enumerable.Range(1, 200).Select(i => $"bg-{i}").Order(), lines.Where(l => l.StartsWith("bg-", StringComparison.Ordinal)).Order());
    }

    [Fact]
    public async Task Output_of_a_subprocess_during_its_own_call_still_streams_to_that_call()
    {
        await using var sb = await fx.NewSandbox();
        var run = await sb.RunCodeAsync("import subprocess\nsubprocess.run('echo child; echo child-err >&2', shell=True)\nprint('parent')");
        Assert.Equal(["child", "parent"], run.StdoutLines);
        Assert.Equal(["child-err"], run.StderrLines);
        // Many calls in a row each get their own output, and the agent keeps no pipe per call.
        for (var i = 0; i < 300; i++)
            Assert.Equal([$"{i}"], (await sb.RunCodeAsync($"import os\nos.system('echo {i}')")).StdoutLines);
        var fds = await sb.ExecAsync("ls /proc/1/fd | wc -l");
        Assert.True(int.Parse(fds.Stdout.Trim()) < 40, $"the agent holds {fds.Stdout.Trim()} descriptors after 300 calls");
    }

    [Theory]
    [InlineData("import os\nos.close(1)\nos.close(2)")]
    [InlineData("import os\nnull = os.open('/dev/null', os.O_WRONLY)\nos.dup2(null, 1)\nos.dup2(null, 2)")]
    public async Task A_cell_that_closes_or_replaces_fd_1_and_2_leaves_the_next_calls_working(string code)
    {
        await using var sb = await fx.NewSandbox();
        var silenced = await sb.RunCodeAsync(code + "\nprint('python level')\nos.system('echo from a child')");
        Assert.True(silenced.ExitCode == 0, silenced.Stderr);
        // Whoever opens files next gets the freed numbers: no output of ours may be read from them.
        var after = await sb.RunCodeAsync("fs = [open('/etc/hostname') for _ in range(8)]\nimport subprocess\nsubprocess.run('echo child again', shell=True)\nprint('still here')");
        Assert.True(after.ExitCode == 0, after.Stderr);
        Assert.Equal(["child again", "still here"], after.StdoutLines);
        Assert.Equal(["again"], (await sb.ExecAsync("echo again")).StdoutLines);
        Assert.Equal(["3"], (await sb.RunCodeAsync("print(1 + 2)")).StdoutLines);
    }

    private static async Task<string> ReadLog(Forkbox.Client.Sandbox sb)
    {
        var run = await sb.ExecAsync($"cat {Log} 2>/dev/null || true");
        return run.Stdout;
    }

    private static string Py(string s) => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";
}
