using System.Diagnostics;
using System.Net;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>
/// Stopping a running call: POST /v1/sandboxes/{id}/interrupt, and a client that closes its exec
/// stream. The REPL survives both; a later call never pays for the one that was stopped.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class InterruptTests(ServerFixture fx)
{
    /// <summary>Starts <paramref name="req"/> and returns once its first stdout line has arrived.</summary>
    private static async Task<Task<Execution>> StartedAsync(Sandbox sb, ExecRequest req)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var call = sb.RunAsync(req, onStdout: _ => started.TrySetResult());
        await Task.WhenAny(started.Task, call).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(started.Task.IsCompleted, $"the call ended before it printed: {(call.IsCompletedSuccessfully ? call.Result.Stderr : call.Exception?.Message)}");
        return call;
    }

    [Theory]
    [InlineData("import time\nprint('started', flush=True)\ntime.sleep(120)")] // blocked in a system call
    [InlineData("print('started', flush=True)\nwhile True: pass")] // running bytecode
    public async Task Interrupt_stops_a_cell_and_keeps_its_variables(string code)
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("kept = 41");
        var call = await StartedAsync(sb, new ExecRequest { Code = code, Rich = true });
        var clock = Stopwatch.StartNew();
        Assert.True(await sb.InterruptAsync());
        var r = await call.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 5);
        Assert.Equal(130, r.ExitCode);
        Assert.False(r.TimedOut);
        Assert.Equal("KeyboardInterrupt", r.Error!.Name);
        Assert.Contains("<cell-", r.Error.Traceback);
        Assert.Equal(42, (await sb.RunCodeAsync("kept + 1")).Result!.Value.GetInt32());
    }

    [Fact]
    public async Task Interrupt_kills_a_commands_process_group()
    {
        await using var sb = await fx.NewSandbox();
        var call = await StartedAsync(sb, new ExecRequest { Code = "echo started; sleep 300 & sleep 301; echo never", Language = "bash" });
        Assert.True(await sb.InterruptAsync());
        var r = await call.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(130, r.ExitCode);
        Assert.Equal(["started"], r.StdoutLines);
        Assert.Contains("interrupted", r.Stderr);
        // Killed ones may stay zombies until PID 1 reaps them: count the living.
        var left = await sb.ExecAsync("ps -e -o stat=,comm= | grep -v '^Z' | grep -w sleep || echo none");
        Assert.Equal("none", left.Stdout);
    }

    [Fact]
    public async Task Interrupt_with_nothing_running_is_false_and_reaches_no_later_call()
    {
        await using var sb = await fx.NewSandbox();
        Assert.False(await sb.InterruptAsync());
        var r = await sb.RunCodeAsync("import time\ntime.sleep(0.5)\n'done'");
        Assert.Equal("done", r.Result!.Value.GetString());
        Assert.Equal(0, r.ExitCode);
    }

    [Fact]
    public async Task Interrupts_landing_while_the_agent_streams_output_leave_the_channel_in_step()
    {
        await using var sb = await fx.NewSandbox();
        for (var i = 0; i < 5; i++)
        {
            var call = await StartedAsync(sb, new ExecRequest { Code = "import sys\nwhile True: print('x' * 200)", Rich = true });
            await Task.Delay(20 * i);
            await sb.InterruptAsync();
            var r = await call.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(130, r.ExitCode);
            Assert.Equal(i, (await sb.RunCodeAsync($"{i}")).Result!.Value.GetInt32());
        }
    }

    [Fact]
    public async Task Interrupting_a_missing_sandbox_is_404()
    {
        var resp = await fx.Http.PostAsync("/v1/sandboxes/sb-nosuch/interrupt", null);
        Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
    }

    /// <summary>Opens an exec stream, reads its first line, and drops the connection.</summary>
    private async Task DisconnectAfterFirstLineAsync(Sandbox sb, string body)
    {
        using var http = new HttpClient { BaseAddress = fx.Http.BaseAddress };
        var req = new HttpRequestMessage(HttpMethod.Post, $"/v1/sandboxes/{sb.Id}/exec") { Content = new StringContent(body) };
        using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        resp.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
        Assert.Contains("started", await reader.ReadLineAsync());
    }

    [Fact]
    public async Task A_client_that_closes_its_stream_interrupts_its_call()
    {
        await using var sb = await fx.NewSandbox();
        await DisconnectAfterFirstLineAsync(sb, """{"code": "import time\nprint('started', flush=True)\ntime.sleep(120)\nfinished = True"}""");
        var clock = Stopwatch.StartNew();
        var next = await sb.RunCodeAsync("'finished' in globals()");
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 10);
        Assert.False(next.Result!.Value.GetBoolean());
    }

    [Fact]
    public async Task A_call_may_ask_to_run_on_when_its_client_goes()
    {
        await using var sb = await fx.NewSandbox();
        await DisconnectAfterFirstLineAsync(sb,
            """{"code": "import time\nprint('started', flush=True)\ntime.sleep(1.5)\nfinished = True", "interrupt_on_disconnect": false}""");
        var next = await sb.RunCodeAsync("'finished' in globals()");
        Assert.True(next.Result!.Value.GetBoolean());
    }
}
