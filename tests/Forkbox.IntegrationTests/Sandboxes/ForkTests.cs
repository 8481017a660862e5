using System.Diagnostics;
using System.Net;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>fork(n), merge_into and diff against the shared server: real forks in real namespaces.</summary>
[Collection(ServerCollection.Name)]
public sealed class ForkTests(ServerFixture fx)
{
    [Fact]
    public async Task Forks_start_with_the_parents_variables_modules_open_files_and_files()
    {
        await using var parent = await fx.NewSandbox();
        await parent.UploadAsync("/root/data.txt", "0123456789"u8.ToArray());
        await parent.RunCodeAsync("""
            import json
            x = 41
            handle = open('/root/data.txt')
            handle.read(4)
            open('/tmp/scratch', 'w').write('from the parent')
            """);
        var children = await parent.ForkAsync(2);
        Assert.Equal(2, children.Count);
        Assert.Equal(2, children.Select(c => c.Id).Distinct().Count());
        foreach (var child in children)
        {
            await using var _ = child;
            var r = await child.RunCodeAsync("[x + 1, json.dumps('ok'), handle.read(3), open('/tmp/scratch').read()]");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal("""[42,"\"ok\"","456","from the parent"]""", r.Result!.Value.GetRawText());
        }
    }

    [Fact]
    public async Task Tree_search_load_once_fork_five_ways_keep_the_winner()
    {
        await using var parent = await fx.NewSandbox(new CreateSandboxRequest { Template = "python-datasci" });
        var load = await parent.RunCodeAsync("import numpy as np, pandas as pd\ndf = pd.DataFrame({'x': np.arange(1_000_000)})\nlen(df)");
        Assert.Equal("1000000", load.Result!.Value.GetRawText());
        var children = await parent.ForkAsync(5);
        // A different plan in each: scale the column by the child's number, write the score down.
        var scores = new List<long>();
        for (var i = 0; i < children.Count; i++)
        {
            var r = await children[i].RunCodeAsync($"df['x'] *= {i + 1}\nscore = int(df['x'].sum())\nopen('/root/plan', 'w').write('plan {i + 1}')\nscore");
            Assert.True(r.ExitCode == 0, r.Stderr);
            scores.Add(r.Result!.Value.GetInt64());
        }
        Assert.Equal(5, scores.Distinct().Count());
        var best = scores.IndexOf(scores.Max());
        await parent.MergeIntoAsync(children[best]);
        foreach (var loser in children.Where((_, i) => i != best)) await loser.CloseAsync();

        var after = await parent.RunCodeAsync("[score, int(df['x'].sum()), open('/root/plan').read()]");
        Assert.Equal($"[{scores[best]},{scores[best]},\"plan {best + 1}\"]", after.Result!.Value.GetRawText());
        await parent.RefreshAsync();
        Assert.Null(parent.Info.Children);
    }

    [Fact]
    public async Task Forks_are_isolated_from_each_other_and_from_the_parent_in_memory_and_on_disk()
    {
        await using var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("x = 'parent'\nlog = open('/root/log.txt', 'w')\nopen('/root/who', 'w').write('parent')");
        var children = await parent.ForkAsync(3);
        try
        {
            for (var i = 0; i < children.Count; i++)
            {
                var r = await children[i].RunCodeAsync($"x = 'child{i}'\nopen('/root/who', 'w').write('child{i}')\nlog.write('child{i} was here'); log.flush()");
                Assert.True(r.ExitCode == 0, r.Stderr);
            }
            await parent.RunCodeAsync("x = 'parent after'\nopen('/root/who', 'w').write('parent after')");
            for (var i = 0; i < children.Count; i++)
            {
                var r = await children[i].RunCodeAsync("[x, open('/root/who').read(), open('/root/log.txt').read()]");
                Assert.Equal($"""["child{i}","child{i}","child{i} was here"]""", r.Result!.Value.GetRawText());
            }
            var p = await parent.RunCodeAsync("[x, open('/root/who').read(), open('/root/log.txt').read()]");
            Assert.Equal("""["parent after","parent after",""]""", p.Result!.Value.GetRawText());
        }
        finally
        {
            foreach (var c in children) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_fork_has_namespaces_of_its_own()
    {
        await using var parent = await fx.NewSandbox();
        await parent.ExecAsync("sleep 600 >/dev/null 2>&1 &");
        var children = await parent.ForkAsync(2);
        await using var a = children[0];
        await using var b = children[1];
        // Only its own processes: not the parent's sleep, not its sibling's.
        var ps = await a.ExecAsync("ps -e -o comm=");
        Assert.DoesNotContain("sleep", ps.StdoutLines);
        Assert.Equal(["forkbox-agent", "ps"], ps.StdoutLines.Where(l => l != "bash").ToArray());
        // Its own network namespace: both siblings can listen on the same port, the parent too.
        const string listen = "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 8765))\ns.listen()\n'listening'";
        foreach (var sb in new[] { a, b, parent })
        {
            var r = await sb.RunCodeAsync(listen);
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        Assert.Equal("sandbox", (await a.ExecAsync("hostname")).Stdout);
        // Its own cgroup, charged separately, with the parent's limits.
        var parentCg = fx.Server.Sandboxes.Get(parent.Id).Cgroup;
        var childCg = fx.Server.Sandboxes.Get(a.Id).Cgroup;
        Assert.NotSame(parentCg, childCg);
        Assert.Single(childCg.Pids());
        await a.RefreshAsync();
        Assert.Equal(parent.Info.Limits, a.Info.Limits);
        Assert.Equal(parent.Id, a.Info.ForkedFrom);
        await parent.RefreshAsync();
        Assert.Equal(new[] { a.Id, b.Id }.Order(), parent.Info.Children!.Order());
    }

    [Fact]
    public async Task A_fork_inherits_custom_limits_and_is_held_to_them()
    {
        await using var parent = await fx.NewSandbox(new CreateSandboxRequest { MemoryMb = 96 });
        var child = (await parent.ForkAsync()).Single();
        await using var _ = child;
        await child.RefreshAsync();
        Assert.Equal(96, child.Info.Limits!.MemoryMb);
        var r = await child.RunCodeAsync("b = bytearray(400 << 20)");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("memory", (await child.RefreshAsync()).DeadReason ?? r.Stderr, StringComparison.OrdinalIgnoreCase);
        // The parent was not charged for the child's attempt and lives on.
        Assert.Equal("2", (await parent.RunCodeAsync("1 + 1")).Result!.Value.GetRawText());
    }

    [Fact]
    public async Task A_fork_survives_its_parents_close_and_a_grandchild_its_parents()
    {
        var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("depth = 0");
        var child = (await parent.ForkAsync()).Single();
        await child.RunCodeAsync("depth = 1");
        var grandchild = (await child.ForkAsync()).Single();
        await parent.CloseAsync();
        await child.CloseAsync();
        var r = await grandchild.RunCodeAsync("depth + 1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("2", r.Result!.Value.GetRawText());
        Assert.True(fx.Server.Sandboxes.Retired >= 2, "closed parents with live forks are retired, not destroyed");
        Assert.True((await fx.Client.CapacityAsync()).Retired >= 2);
        Assert.Matches(@"forkbox_sandboxes_retired [2-9]", await fx.Http.GetStringAsync("/metrics"));
        Assert.Matches(@"forkbox_fork_seconds_count [1-9]", await fx.Http.GetStringAsync("/metrics"));
        await grandchild.CloseAsync();
        await ServerFixture.WaitUntil(() => fx.Server.Sandboxes.Retired == 0, "retired sandboxes to be released after their last fork closed");
    }

    [Fact]
    public async Task Fork_close_cycles_leave_nothing_behind()
    {
        await using var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("payload = list(range(100000))");
        for (var i = 0; i < 20; i++)
        {
            var children = await parent.ForkAsync(i % 3 + 1);
            foreach (var c in children) await c.CloseAsync();
        }
        // Every live sandbox (held or pooled) has one agent process, one layer directory and one
        // cgroup; nothing else may remain once the closes have finished in the background.
        var sandboxes = fx.Server.Sandboxes;
        var cgroupParent = Directory.GetDirectories("/sys/fs/cgroup/pids").Single(d => Path.GetFileName(d).StartsWith("forkbox-", StringComparison.Ordinal)
            && Directory.GetDirectories(d).Any(s => Path.GetFileName(s) == parent.Id));
        // This server's agents only: other test classes run servers of their own at the same time.
        var ours = "/" + Path.GetFileName(cgroupParent) + "/";
        int Agents() => Process.GetProcesses().Count(p =>
        {
            try
            {
                return p.ProcessName == "forkbox-agent" && File.ReadAllText($"/proc/{p.Id}/cgroup").Contains(ours, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false; // gone meanwhile
            }
        });
        (int Live, int Agents, int Layers, int Cgroups, int Retired) State() => (
            sandboxes.Running + sandboxes.Pools.Sum(p => p.Ready),
            Agents(),
            Directory.GetDirectories(fx.Options.SandboxesDir, "sbx_*").Length,
            Directory.GetDirectories(cgroupParent).Length,
            sandboxes.Retired);
        bool Clean((int Live, int Agents, int Layers, int Cgroups, int Retired) s) =>
            s.Agents == s.Live && s.Layers == s.Live && s.Cgroups == s.Live && s.Retired == 0;
        try
        {
            await ServerFixture.WaitUntil(() => Clean(State()), "leftovers");
        }
        catch (TimeoutException)
        {
            Assert.Fail($"after 40 forks closed, (live, agents, layer dirs, cgroups, retired) = {State()}");
        }
    }

    [Fact]
    public async Task Forks_start_on_a_busy_host()
    {
        // With every core busy a fork may be grafted (its root moved) before it has run a single
        // instruction: it must not depend on anything it would only do after it was reported.
        await using var burner1 = await fx.NewSandbox();
        await using var burner2 = await fx.NewSandbox();
        foreach (var b in new[] { burner1, burner2 })
            await b.ExecAsync("timeout 60 sh -c 'while :; do :; done' >/dev/null 2>&1 &");
        await using var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("f = open('/tmp/r', 'w+')\nf.write('state'); f.flush()");
        for (var i = 0; i < 20; i++)
        {
            await parent.RunCodeAsync($"round = {i}\nf.seek(0)");
            var child = (await parent.ForkAsync()).Single();
            await using var _ = child;
            Assert.Equal($"[{i},\"state\"]", (await child.RunCodeAsync("[round, f.read()]")).Result!.Value.GetRawText());
        }
    }

    [Fact]
    public async Task Merge_into_gives_the_parents_id_to_the_winner()
    {
        await using var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("plan = 'none'");
        var children = await parent.ForkAsync(2);
        var (winner, loser) = (children[0], children[1]);
        await winner.RunCodeAsync("plan = 'A'\nopen('/root/result', 'w').write('A won')");
        await loser.RunCodeAsync("plan = 'B'");

        await parent.MergeIntoAsync(winner);

        var r = await parent.RunCodeAsync("[plan, open('/root/result').read()]");
        Assert.Equal("""["A","A won"]""", r.Result!.Value.GetRawText());
        var gone = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => Sandbox.ConnectAsync(children[0].Id, fx.Client));
        Assert.Equal(404, gone.Status);
        Assert.Equal("\"B\"", (await loser.RunCodeAsync("plan")).Result!.Value.GetRawText());
        // The same winner again: its id is gone.
        var again = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => parent.MergeIntoAsync(winner));
        Assert.Equal(404, again.Status);
        await loser.DisposeAsync();
    }

    [Fact]
    public async Task Merge_into_refuses_itself_and_sandboxes_that_are_not_descendants()
    {
        await using var parent = await fx.NewSandbox();
        await using var stranger = await fx.NewSandbox();
        var children = await parent.ForkAsync(2);
        await using var a = children[0];
        await using var b = children[1];
        async Task<ForkboxApiException> Refused(Sandbox target, Sandbox winner) =>
            await Assert.ThrowsAnyAsync<ForkboxApiException>(() => target.MergeIntoAsync(winner));
        Assert.Equal(400, (await Refused(parent, parent)).Status);
        Assert.Equal(400, (await Refused(parent, stranger)).Status);
        Assert.Equal(400, (await Refused(a, b)).Status);         // a sibling is not a descendant
        var upward = await Refused(a, parent);                   // nor is a parent
        Assert.Equal(400, upward.Status);
        Assert.Contains("not a fork of", upward.Message);
        // Nothing changed: every one still answers as itself.
        foreach (var sb in new[] { parent, stranger, a, b })
            Assert.True((await sb.RunCodeAsync("1")).ExitCode == 0);
    }

    [Fact]
    public async Task Merge_into_a_grandparent_takes_a_grandchild()
    {
        await using var root = await fx.NewSandbox();
        var child = (await root.ForkAsync()).Single();
        await child.RunCodeAsync("v = 'grandchild'");
        var grandchild = (await child.ForkAsync()).Single();
        await root.MergeIntoAsync(grandchild);
        Assert.Equal("\"grandchild\"", (await root.RunCodeAsync("v")).Result!.Value.GetRawText());
        await child.DisposeAsync();
    }

    [Fact]
    public async Task Diff_reports_what_a_fork_added_removed_and_changed()
    {
        await using var parent = await fx.NewSandbox();
        await parent.RunCodeAsync("""
            import os
            os.makedirs('/root/dir', exist_ok=True)
            for name in ('same', 'common', 'gone', 'dir/inner'):
                open('/root/' + name, 'w').write(name)
            """);
        var child = (await parent.ForkAsync()).Single();
        await using var _ = child;
        await child.RunCodeAsync("""
            import os, shutil
            open('/root/common', 'w').write('changed by the fork')
            os.remove('/root/gone')
            shutil.rmtree('/root/dir')
            open('/root/new', 'w').write('new')
            open('/tmp/scratch', 'w').write('tmp')
            os.makedirs('/var/tmp/elsewhere', exist_ok=True)
            """);
        var d = await parent.DiffAsync(child);
        Assert.Equal(["/root/new", "/tmp/scratch"], d.Added);
        Assert.Equal(["/root/dir", "/root/dir/inner", "/root/gone"], d.Removed);
        Assert.Equal(["/root/common"], d.Changed);
        var back = await child.DiffAsync(parent);
        Assert.Equal(d.Removed, back.Added);
        Assert.Equal(d.Added, back.Removed);
        var only = await parent.DiffAsync(child, ["/var"]);
        Assert.Equal(["/var/tmp/elsewhere"], only.Added);
        Assert.Empty(only.Removed);
        Assert.Empty((await parent.DiffAsync(parent)).Added);
        var bad = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => parent.DiffAsync(child, ["/root/../etc"]));
        Assert.Equal(400, bad.Status);
    }

    [Fact]
    public async Task Fork_of_a_busy_sandbox_waits_for_the_running_call()
    {
        await using var parent = await fx.NewSandbox();
        var running = parent.RunCodeAsync("import time\ntime.sleep(1.5)\nstage = 'after the call'");
        await Task.Delay(300);
        var watch = Stopwatch.StartNew();
        var child = (await parent.ForkAsync()).Single();
        await using var _ = child;
        Assert.True(running.IsCompleted, "fork answered before the running call ended");
        Assert.True((await running).ExitCode == 0);
        Assert.True(watch.Elapsed > TimeSpan.FromSeconds(0.8), $"fork took only {watch.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal("\"after the call\"", (await child.RunCodeAsync("stage")).Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Fork_refuses_bad_counts_and_unknown_sandboxes()
    {
        await using var parent = await fx.NewSandbox();
        foreach (var n in new[] { 0, 33, -1 })
        {
            var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => parent.ForkAsync(n));
            Assert.Equal(400, e.Status);
            Assert.Contains("between 1 and 32", e.Message);
        }
        using var resp = await fx.Http.PostAsync(new Uri(fx.Server.Address, "v1/sandboxes/sbx_00000000000000000000000000000000/fork"), null);
        Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        using var bad = await fx.Http.PostAsync(new Uri(fx.Server.Address, $"v1/sandboxes/{parent.Id}/fork"),
            new StringContent("{\"n\": \"many\"}", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }
}

/// <summary>Servers of their own: a fork that gives up quickly on a busy sandbox, a small host.</summary>
public sealed class ForkBusyTests
{
    [Fact]
    public async Task Forks_count_against_the_hosts_maximum()
    {
        await using var server = await TestServer.StartAsync("forkfull", o => o with { Limits = o.Limits with { MaxSandboxes = 3 }, Pool = o.Pool with { Size = 0 } });
        await using var sb = await Sandbox.CreateAsync(client: server.Client);
        var full = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ForkAsync(3));
        Assert.Equal(503, full.Status);
        Assert.Contains("no room for 3", full.Message);
        var two = await sb.ForkAsync(2);
        Assert.Equal(503, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ForkAsync())).Status);
        await two[0].CloseAsync();
        // A close gives its place back once its processes are gone, in the background.
        Sandbox? again = null;
        await ServerFixture.WaitUntil(() =>
        {
            try
            {
                again = sb.ForkAsync().GetAwaiter().GetResult().Single();
                return true;
            }
            catch (ForkboxApiException e) when (e.Status == 503)
            {
                return false;
            }
        }, "a fork after a close freed a place", 10);
        foreach (var c in two.Skip(1).Append(again!)) await c.CloseAsync();
    }

    [Fact]
    public async Task Fork_of_a_sandbox_busy_past_the_wait_answers_409_and_says_so()
    {
        await using var server = await TestServer.StartAsync("forkbusy", o => o with { Forks = o.Forks with { WaitS = 0.3 } });
        await using var sb = await Sandbox.CreateAsync(client: server.Client);
        var running = sb.RunCodeAsync("import time\ntime.sleep(3)");
        await Task.Delay(300);
        var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ForkAsync());
        Assert.Equal(409, e.Status);
        Assert.Equal("sandbox_busy", e.Code);
        Assert.Contains("still running a call", e.Message);
        Assert.True((await running).ExitCode == 0);
        var child = (await sb.ForkAsync()).Single();
        await child.DisposeAsync();
    }
}
