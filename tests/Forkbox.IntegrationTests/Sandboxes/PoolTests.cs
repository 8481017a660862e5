using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>The warm pool: ready sandboxes handed out on create, refilled in the background.</summary>
[Collection(ServerCollection.Name)]
public sealed class PoolTests(ServerFixture fx)
{
    [Fact]
    public async Task A_pool_hit_is_a_ready_sandbox_with_the_templates_modules_imported()
    {
        await fx.WaitForPool(1);
        await using var sb = await fx.NewSandbox();
        Assert.True(sb.Info.PoolHit);
        Assert.Contains("pool_take", sb.Info.TimingsMs!.Keys);
        var r = await sb.RunCodeAsync("import sys; all(m in sys.modules for m in ['json', 'subprocess', 'pathlib'])");
        Assert.True(r.Result!.Value.GetBoolean());
    }

    [Fact]
    public async Task Sandboxes_wait_in_the_pool_at_nice_19_and_run_at_0_once_handed_out_or_resumed()
    {
        await fx.WaitForPool(1);
        // Waited for: a sandbox another test closed may still be dying outside the list.
        var parent = Forkbox.Linux.Cgroups.CgroupDriver.ParentName(fx.Options.DataDir);
        await ServerFixture.WaitUntil(() =>
        {
            var handedOut = fx.Server.Sandboxes.All.Select(s => s.Pid).ToHashSet();
            var pooled = PidsUnder(parent).Where(p => !handedOut.Contains(p)).ToList();
            return pooled.Count > 0 && pooled.All(p => Nice(p) == 19);
        }, "every pooled sandbox at nice 19", 10);

        await using var sb = await fx.NewSandbox();
        Assert.True(sb.Info.PoolHit);
        Assert.Equal("[0]", (await sb.RunCodeAsync(NicesInTheSandbox)).Result!.Value.GetRawText());

        // A resume is made while its client waits: at 0 from the start.
        await using var space = await fx.NewSandbox(new() { Persistent = true });
        await space.HibernateAsync();
        Assert.Equal("[0]", (await space.RunCodeAsync(NicesInTheSandbox)).Result!.Value.GetRawText());
    }

    /// <summary>The nice values of every thread of every process in the sandbox: the agent's, and a child it starts.</summary>
    private const string NicesInTheSandbox = """
        import os, subprocess
        child = subprocess.Popen(["sleep", "5"])
        nices = {int(open(f"/proc/{p}/task/{t}/stat").read().rsplit(")", 1)[1].split()[16])
                 for p in os.listdir("/proc") if p.isdigit() for t in os.listdir(f"/proc/{p}/task")}
        child.kill(); child.wait()
        sorted(nices)
        """;

    private static IEnumerable<int> PidsUnder(string parent) =>
        Directory.GetDirectories(Security.SandboxCgroup.PidsParentDir(parent))
            .SelectMany(d => File.ReadAllLines(Path.Combine(d, "cgroup.procs"))).Select(int.Parse);

    /// <summary>A process's nice value; 19 for one gone (it is no sandbox of ours any more).</summary>
    private static int Nice(int pid)
    {
        try { return int.Parse(File.ReadAllText($"/proc/{pid}/stat").Split(')')[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[16]); }
        catch (IOException) { return 19; }
    }

    [Fact]
    public async Task A_datasci_pool_hit_has_numpy_pandas_and_scipy_imported_already()
    {
        await fx.WaitForPool(1, "python-datasci");
        await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Template = "python-datasci" });
        Assert.True(sb.Info.PoolHit);
        Assert.Equal("python-datasci", sb.Info.Template);
        var loaded = await sb.RunCodeAsync("import sys; [m in sys.modules for m in ('numpy', 'pandas', 'scipy')]");
        Assert.Equal("[true,true,true]", loaded.Result!.Value.GetRawText());
        var sum = await sb.RunCodeAsync("import pandas as pd; int(pd.DataFrame({'a': [1, 2, 3]})['a'].sum())");
        Assert.Equal(6, sum.Result!.Value.GetInt32());
    }

    [Fact]
    public async Task Two_pooled_sandboxes_share_no_writable_state()
    {
        await fx.WaitForPool(2);
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        Assert.True(a.Info.PoolHit == true && b.Info.PoolHit == true);
        await a.RunCodeAsync("shared = 'a'\nopen('/root/f', 'w').write('a'); open('/tmp/f', 'w').write('a')");
        var inB = await b.RunCodeAsync("import os; ('shared' in globals(), os.path.exists('/root/f'), os.path.exists('/tmp/f'))");
        Assert.Equal("[false,false,false]", inB.Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Env_metadata_and_limits_given_at_create_apply_to_a_pool_hit()
    {
        await fx.WaitForPool(1);
        await using var sb = await fx.NewSandbox(new CreateSandboxRequest
        {
            Env = new() { ["GREETING"] = "hello" },
            Metadata = new() { ["owner"] = "tests" },
            MemoryMb = 300,
        });
        Assert.True(sb.Info.PoolHit);
        Assert.Equal("tests", sb.Info.Metadata["owner"]);
        Assert.Equal("hello", (await sb.RunCodeAsync("import os; print(os.environ['GREETING'])")).Stdout);
        Assert.Equal("hello", (await sb.ExecAsync("echo $GREETING")).Stdout);
        Assert.Equal(300, sb.Info.Limits!.MemoryMb);
        var limitFile = Directory.GetFiles("/sys/fs/cgroup", "memory.*", SearchOption.TopDirectoryOnly).Length > 0
            ? Path.Combine("/sys/fs/cgroup", Forkbox.Linux.Cgroups.CgroupDriver.ParentName(fx.Options.DataDir), sb.Id, "memory.max")
            : Path.Combine("/sys/fs/cgroup/memory", Forkbox.Linux.Cgroups.CgroupDriver.ParentName(fx.Options.DataDir), sb.Id, "memory.limit_in_bytes");
        Assert.Equal(300L << 20, long.Parse(File.ReadAllText(limitFile)));
    }

    [Fact]
    public async Task Pool_size_changes_take_effect_and_a_drained_pool_falls_back_to_creating()
    {
        try
        {
            var drained = await SetPoolSize(0);
            Assert.Equal(0, drained.GetProperty("target").GetInt32());
            await ServerFixture.WaitUntil(() => fx.Server.Sandboxes.Pool("default").Ready == 0, "the default pool draining");
            await using (var miss = await fx.NewSandbox())
            {
                Assert.False(miss.Info.PoolHit);
                Assert.Equal("1", (await miss.RunCodeAsync("print(1)")).Stdout);
            }
            await SetPoolSize(3);
            await fx.WaitForPool(3);
            var capacity = await fx.Client.CapacityAsync();
            var pool = Assert.Single(capacity.Pools!, p => p.Template == "default");
            Assert.Equal((3, 3), (pool.Ready, pool.Target));
            Assert.True(pool.RefillMsP50 > 0);
            var metrics = await fx.Http.GetStringAsync("/metrics");
            Assert.Contains("forkbox_create_seconds_count{pool=\"miss\"}", metrics);
            Assert.Contains("forkbox_pool_refill_seconds_count", metrics);
        }
        finally
        {
            await SetPoolSize(fx.Options.Pool.Size);
        }
    }

    [Fact]
    public async Task Bad_pool_sizes_and_unknown_templates_are_400()
    {
        foreach (var (template, body) in new[] { ("default", "{\"size\": -1}"), ("default", "{}"), ("nope", "{\"size\": 1}") })
        {
            using var resp = await fx.Http.PutAsync($"/v1/templates/{template}/pool", new StringContent(body));
            Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        }
    }

    [Fact]
    public async Task A_killed_zygote_is_replaced_and_creates_keep_working()
    {
        await using var before = await fx.NewSandbox();
        try
        {
            await SetPoolSize(0);
            await ServerFixture.WaitUntil(() => fx.Server.Sandboxes.Pool("default").Ready == 0, "the default pool draining");
            var zygote = fx.Server.Sandboxes.ZygotePid("default");
            Assert.NotNull(zygote);
            System.Diagnostics.Process.GetProcessById(zygote.Value).Kill();
            await ServerFixture.WaitUntil(() => !Directory.Exists($"/proc/{zygote}"), "the killed zygote exiting");
            await using var after = await fx.NewSandbox();
            Assert.False(after.Info.PoolHit);
            Assert.Equal("new", (await after.RunCodeAsync("print('new')")).Stdout);
            Assert.NotEqual(zygote, fx.Server.Sandboxes.ZygotePid("default"));
            // Sandboxes forked by the old zygote live on without it.
            Assert.Equal("old", (await before.RunCodeAsync("print('old')")).Stdout);
        }
        finally
        {
            await SetPoolSize(fx.Options.Pool.Size);
        }
    }

    private async Task<JsonElement> SetPoolSize(int size)
    {
        using var resp = await fx.Http.PutAsJsonAsync("/v1/templates/default/pool", new { size });
        resp.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.Clone();
    }
}
