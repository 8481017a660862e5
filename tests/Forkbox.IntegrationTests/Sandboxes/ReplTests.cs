using System.Diagnostics;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>The persistent Python REPL and shell commands, through POST /v1/sandboxes/{id}/exec.</summary>
[Collection(ServerCollection.Name)]
public sealed class ReplTests(ServerFixture fx)
{
    [Fact]
    public async Task Globals_persist_between_calls()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("x = 41");
        var printed = await sb.RunCodeAsync("print(x + 1)");
        Assert.Equal(["42"], printed.StdoutLines);
        var value = await sb.RunCodeAsync("x + 1");
        Assert.Equal(42, value.Result!.Value.GetInt32());
        Assert.Equal(0, value.ExitCode);
    }

    [Fact]
    public async Task Without_rich_no_result_event_is_sent()
    {
        await using var sb = await fx.NewSandbox();
        var types = new List<string>();
        await foreach (var ev in sb.StreamAsync(new ExecRequest { Code = "1 + 1" }))
            types.Add(ev.Type);
        Assert.Equal(["exit"], types);
    }

    [Fact]
    public async Task Output_streams_before_the_cell_ends()
    {
        await using var sb = await fx.NewSandbox();
        var clock = Stopwatch.StartNew();
        var seen = new List<(string Type, string Data, double At, long Seq)>();
        await foreach (var ev in sb.StreamAsync(new ExecRequest { Code = "import time\nprint('first')\ntime.sleep(1)\nprint('second')" }))
            seen.Add((ev.Type, ev.Type == "exit" ? "" : ev.Data.GetString()!, clock.Elapsed.TotalSeconds, ev.Seq));
        Assert.Equal(["stdout", "stdout", "exit"], seen.Select(s => s.Type));
        Assert.Equal("first", seen[0].Data);
        Assert.Equal("second", seen[1].Data);
        Assert.True(seen[1].At - seen[0].At > 0.8, $"first line arrived only {seen[1].At - seen[0].At:F2}s before the second");
        Assert.Equal([0L, 1L, 2L], seen.Select(s => s.Seq));
    }

    [Fact]
    public async Task An_exception_is_reported_and_the_next_call_works()
    {
        await using var sb = await fx.NewSandbox();
        var failed = await sb.RunCodeAsync("1/0");
        Assert.NotEqual(0, failed.ExitCode);
        Assert.Contains("ZeroDivisionError", failed.Stderr);
        Assert.Equal("ZeroDivisionError", failed.Error!.Name);
        Assert.Contains("<cell-", failed.Error.Traceback);
        var ok = await sb.RunCodeAsync("print('still here')");
        Assert.Equal("still here", ok.Stdout);
    }

    [Fact]
    public async Task Sys_exit_and_KeyboardInterrupt_do_not_kill_the_repl()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("kept = 7");
        var exited = await sb.RunCodeAsync("import sys; sys.exit(3)");
        Assert.Equal(3, exited.ExitCode);
        var interrupted = await sb.RunCodeAsync("raise KeyboardInterrupt");
        Assert.Equal("KeyboardInterrupt", interrupted.Error!.Name);
        Assert.Equal(7, (await sb.RunCodeAsync("kept")).Result!.Value.GetInt32());
    }

    [Fact]
    public async Task A_timeout_interrupts_the_cell_and_the_repl_survives()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("kept = 'yes'");
        var clock = Stopwatch.StartNew();
        var spun = await sb.RunCodeAsync("while True: pass", timeoutS: 1);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 4);
        Assert.True(spun.TimedOut);
        Assert.Equal(124, spun.ExitCode);
        Assert.Equal("TimeoutError", spun.Error!.Name);
        Assert.Equal("yes", (await sb.RunCodeAsync("kept")).Result!.Value.GetString());
    }

    [Fact]
    public async Task A_timeout_kills_a_shell_command()
    {
        await using var sb = await fx.NewSandbox();
        var clock = Stopwatch.StartNew();
        var slept = await sb.ExecAsync("echo start; sleep 30; echo never", timeoutS: 1);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 4);
        Assert.True(slept.TimedOut);
        Assert.Equal(["start"], slept.StdoutLines);
        Assert.Equal(0, (await sb.ExecAsync("true")).ExitCode);
    }

    [Fact]
    public async Task Bash_runs_in_a_fresh_process_with_its_exit_code_and_both_streams()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.ExecAsync("echo out; echo err >&2; cd /tmp; export GONE=1; exit 5");
        Assert.Equal(5, r.ExitCode);
        Assert.Equal(["out"], r.StdoutLines);
        Assert.Equal(["err"], r.StderrLines);
        var fresh = await sb.ExecAsync("pwd; echo ${GONE:-unset}");
        Assert.Equal(["/root", "unset"], fresh.StdoutLines);
    }

    [Fact]
    public async Task Subprocess_output_of_a_python_cell_reaches_the_caller()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync("import os\nprint('py', flush=True)\nos.system('echo from-shell')");
        Assert.Equal(["py", "from-shell"], r.StdoutLines);
    }

    [Fact]
    public async Task Exit_codes_of_children_a_cell_waits_for_are_kept()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync("""
            import os, subprocess
            codes = [subprocess.run(['sh', '-c', 'exit 3']).returncode for _ in range(30)]
            codes += [os.waitstatus_to_exitcode(os.system('exit 2')) for _ in range(10)]
            sorted(set(codes))
            """);
        Assert.Equal("[2,3]", r.Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Orphans_are_reaped()
    {
        await using var sb = await fx.NewSandbox();
        await sb.ExecAsync("for i in $(seq 40); do (sleep 0.2 &) ; done");
        await sb.RunCodeAsync("import os\nfor i in range(10): os.system('sleep 0.2 &')");
        await Task.Delay(TimeSpan.FromSeconds(ZombieGraceSeconds + 2));
        var zombies = await sb.ExecAsync("ps -e -o stat= | grep -c '^Z' || true");
        Assert.Equal("0", zombies.Stdout);
    }

    private const double ZombieGraceSeconds = 5;

    [Fact]
    public async Task Env_and_cwd_apply_to_one_call()
    {
        await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Env = new() { ["AT_CREATE"] = "c" } });
        var r = await sb.RunAsync(new ExecRequest
        {
            Code = "import os; print(os.environ['AT_CREATE'], os.environ['PER_CALL'], os.getcwd())",
            Env = new() { ["PER_CALL"] = "p" },
            Cwd = "/tmp",
        });
        Assert.Equal("c p /tmp", r.Stdout);
        var after = await sb.RunCodeAsync("import os; print(os.environ.get('PER_CALL'), os.getcwd())");
        Assert.Equal("None /root", after.Stdout);
    }

    [Fact]
    public async Task Calls_on_one_sandbox_queue_in_order()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("log = []");
        var first = sb.RunCodeAsync("import time; time.sleep(0.5); log.append('first')");
        await Task.Delay(100);
        var second = sb.RunCodeAsync("log.append('second'); log");
        await Task.WhenAll(first, second);
        Assert.Equal("[\"first\",\"second\"]", (await second).Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Huge_output_is_truncated_with_a_marker()
    {
        await using var sb = await fx.NewSandbox();
        // 40 MB of output against the default 16 MiB limit per call.
        var r = await sb.RunCodeAsync("import sys\nfor i in range(400_000): sys.stdout.write('x' * 99 + '\\n')");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains(r.StderrLines, l => l.StartsWith("[forkbox: output truncated", StringComparison.Ordinal));
        Assert.InRange(r.StdoutLines.Count, 100_000, 170_000);
        Assert.Equal("ok", (await sb.RunCodeAsync("print('ok')")).Stdout);
    }
}
