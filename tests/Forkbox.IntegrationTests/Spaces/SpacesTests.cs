using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Spaces;

/// <summary>Spaces against the shared server: pause, hibernate, resume, auto-resume, the idle policy, names.</summary>
[Collection(ServerCollection.Name)]
public sealed class SpacesTests(ServerFixture fx)
{
    private Task<Sandbox> NewSpace(string? name = null, double? idle = null, double? hibernateAfter = null) =>
        fx.NewSandbox(new CreateSandboxRequest { Persistent = true, Name = name, IdleTimeoutS = idle, HibernateAfterS = hibernateAfter });

    /// <summary>A file of the sandbox read on the host, from its writable layer, without a call that would resume it.</summary>
    private string ReadFromHost(string id, string path) =>
        File.ReadAllText(Path.Combine(fx.Server.Sandboxes.Get(id).Dirs.Layers[0].Upper, path.TrimStart('/')));

    [Fact]
    public async Task Pause_stops_every_process_and_resume_finds_them_all_with_the_variables()
    {
        await using var sb = await NewSpace();
        var r = await sb.RunCodeAsync("""
            import subprocess
            x = {"answer": 42}
            ticker = subprocess.Popen(["python3", "-c",
                "import os, time\nn = 0\nwhile True:\n    n += 1\n    open('/root/t', 'w').write(str(n))\n    os.replace('/root/t', '/root/ticks')\n    time.sleep(0.02)"])
            """);
        Assert.True(r.ExitCode == 0, r.Stderr);
        await ServerFixture.WaitUntil(() => File.Exists(Path.Combine(fx.Server.Sandboxes.Get(sb.Id).Dirs.Layers[0].Upper, "root/ticks")), "the ticker writing");

        var paused = await sb.PauseAsync();
        Assert.Equal("paused", paused.State);
        Assert.Equal("paused", (await sb.RefreshAsync()).State);
        var before = ReadFromHost(sb.Id, "/root/ticks");
        await Task.Delay(400);
        Assert.Equal(before, ReadFromHost(sb.Id, "/root/ticks")); // nothing runs while paused

        var resumed = await sb.ResumeAsync();
        Assert.Equal("paused", resumed.ResumedFrom);
        Assert.Equal("ready", resumed.State);
        var after = await sb.RunCodeAsync("import time; time.sleep(0.2); [x['answer'], ticker.poll() is None, int(open('/root/ticks').read())]");
        var values = after.Result!.Value.EnumerateArray().ToList();
        Assert.Equal(42, values[0].GetInt32());
        Assert.True(values[1].GetBoolean(), "the background process did not survive the pause");
        Assert.True(values[2].GetInt32() > int.Parse(before), "the background process did not run again after resume");
    }

    [Fact]
    public async Task Hibernate_writes_files_and_globals_to_disk_and_resume_brings_them_back()
    {
        await using var sb = await NewSpace();
        await sb.UploadAsync("/root/notes.txt", "kept on disk"u8.ToArray());
        var setup = await sb.RunCodeAsync("""
            import json as j, decimal, socket, threading, subprocess
            count = 7
            table = {"a": [1, 2, 3], "b": "text"}
            blob = bytes(range(256)) * 40000
            def double(v):
                return v * 2
            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y
                def norm2(self):
                    return self.x ** 2 + self.y ** 2
            p = Point(3, 4)
            sq = lambda v: v * v
            sock = socket.socket()
            lock = threading.Lock()
            worker = threading.Thread(target=lambda: __import__("time").sleep(60), name="sleeper", daemon=True)
            worker.start()
            bg = subprocess.Popen(["sleep", "600"])
            """);
        Assert.True(setup.ExitCode == 0, setup.Stderr);
        var memoryBefore = (await sb.RefreshAsync()).MemoryBytes;

        var h = await sb.HibernateAsync();
        Assert.Equal("hibernated", h.State);
        Assert.Contains("count", h.Saved!);
        Assert.Contains("double", h.Saved!);
        Assert.Contains("sock", h.NotRestored!.Keys);
        Assert.Contains(h.NotRestored!.Keys, k => k.StartsWith("thread sleeper", StringComparison.Ordinal));
        Assert.Contains(h.NotRestored!.Keys, k => k.StartsWith("process", StringComparison.Ordinal) && k.Contains("sleep 600"));
        Assert.True(h.Bytes > 10_000_000, $"only {h.Bytes} bytes written for 10 MB of state");
        Assert.True(h.MemoryFreedBytes > 0 && memoryBefore > 0);

        var info = await sb.RefreshAsync();
        Assert.Equal("hibernated", info.State);
        Assert.True(info.HibernatedBytes > 10_000_000);
        Assert.Throws<Core.Errors.ConflictException>(() => fx.Server.Sandboxes.Get(sb.Id)); // no live sandbox: its memory is freed
        Assert.True((await fx.Client.CapacityAsync()).HibernatedBytes >= info.HibernatedBytes);

        var resumed = await sb.ResumeAsync();
        Assert.Equal("hibernated", resumed.ResumedFrom);
        Assert.Equal("ready", resumed.State);
        Assert.Contains("table", resumed.Restored!);
        Assert.Contains("decimal", resumed.Modules!);
        Assert.Contains("sock", resumed.NotRestored!.Keys);
        Assert.Contains(resumed.NotRestored!.Keys, k => k.StartsWith("process", StringComparison.Ordinal));

        var r = await sb.RunCodeAsync("""
            import sys
            [count, table, len(blob), blob[:3] == bytes([0, 1, 2]), double(21), p.norm2(), sq(9), j.dumps([1]),
             "decimal" in sys.modules, open("/root/notes.txt").read(), "sock" in globals(), __import__("os").path.exists("/.forkbox-hibernate")]
            """);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("""[7,{"a":[1,2,3],"b":"text"},10240000,true,42,25,81,"[1]",true,"kept on disk",false,false]""", r.Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Exec_and_file_calls_on_a_frozen_sandbox_resume_it_and_say_so()
    {
        await using var sb = await NewSpace();
        await sb.RunCodeAsync("x = 5");
        await sb.PauseAsync();
        var exec = await fx.Http.PostAsJsonAsync($"/v1/sandboxes/{sb.Id}/exec", new { code = "print(x)" });
        Assert.Equal(HttpStatusCode.OK, exec.StatusCode);
        Assert.Equal("paused", exec.Headers.GetValues("X-Forkbox-Resumed").Single());
        Assert.Contains("\"5\"", await exec.Content.ReadAsStringAsync());

        await sb.HibernateAsync();
        var list = await fx.Http.GetAsync($"/v1/sandboxes/{sb.Id}/files/list?path=/root");
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        Assert.Equal("hibernated", list.Headers.GetValues("X-Forkbox-Resumed").Single());
        Assert.Equal("ready", (await sb.RefreshAsync()).State);

        var again = await fx.Http.PostAsJsonAsync($"/v1/sandboxes/{sb.Id}/exec", new { code = "print(x)" });
        Assert.False(again.Headers.Contains("X-Forkbox-Resumed"), "a running sandbox was reported resumed");

        await sb.HibernateAsync();
        var children = await sb.ForkAsync(1); // fork resumes too
        await using var child = children[0];
        Assert.Equal(6, (await child.RunCodeAsync("x + 1")).Result!.Value.GetInt32());
    }

    [Fact]
    public async Task Idle_policy_pauses_then_hibernates_and_a_call_brings_it_back()
    {
        await using var sb = await NewSpace(idle: 1, hibernateAfter: 3);
        await sb.RunCodeAsync("kept = 'through both levels'");
        await ServerFixture.WaitUntil(() => State(sb.Id) == "paused", "paused after 1 s idle", 10);
        await ServerFixture.WaitUntil(() => State(sb.Id) == "hibernated", "hibernated after 3 s idle", 20);
        var r = await sb.RunCodeAsync("kept");
        Assert.Equal("through both levels", r.Result!.Value.GetString());
        Assert.Equal("ready", State(sb.Id));
    }

    [Fact]
    public async Task Ephemeral_sandboxes_are_not_frozen_by_the_idle_policy_and_take_no_name()
    {
        var bad = await fx.Http.PostAsJsonAsync("/v1/sandboxes", new { name = "no-persistent" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("persistent", await bad.Content.ReadAsStringAsync());
        var badName = await fx.Http.PostAsJsonAsync("/v1/sandboxes", new { persistent = true, name = "has space" });
        Assert.Equal(HttpStatusCode.BadRequest, badName.StatusCode);
    }

    [Fact]
    public async Task A_name_is_unique_per_owner_and_reusable_only_after_delete()
    {
        var name = "space-" + Guid.NewGuid().ToString("N")[..8];
        var first = await NewSpace(name);
        var taken = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => NewSpace(name));
        Assert.Equal(409, taken.Status);
        Assert.Equal("name_taken", taken.Code);

        var found = await fx.Client.ListSandboxesAsync(name);
        Assert.Equal(first.Id, Assert.Single(found.Sandboxes).Id);

        await first.HibernateAsync();
        Assert.Equal(409, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => NewSpace(name))).Status);
        Assert.Equal("hibernated", Assert.Single((await fx.Client.ListSandboxesAsync(name)).Sandboxes).State);

        await first.CloseAsync();
        Assert.Empty((await fx.Client.ListSandboxesAsync(name)).Sandboxes);
        await using var second = await NewSpace(name);
        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal(404, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => first.RefreshAsync())).Status);
    }

    [Fact]
    public async Task Hibernate_refuses_a_sandbox_with_live_forks_and_wrong_states_are_409()
    {
        await using var sb = await NewSpace();
        var forks = await sb.ForkAsync(1);
        var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.HibernateAsync());
        Assert.Equal(409, e.Status);
        Assert.Equal("has_forks", e.Code);
        await forks[0].CloseAsync();
        await ServerFixture.WaitUntil(() => fx.Server.Sandboxes.Get(sb.Id).Children.Count == 0, "the fork released");
        Assert.Equal("hibernated", (await sb.HibernateAsync()).State);
        Assert.Equal("hibernated", (await sb.HibernateAsync()).State); // again: nothing to do
        var pause = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.PauseAsync());
        Assert.Equal(409, pause.Status);
        var resume = await fx.Http.PostAsync("/v1/sandboxes/sbx_00000000000000000000000000000000/resume", null);
        Assert.Equal(HttpStatusCode.NotFound, resume.StatusCode);
    }

    [Fact]
    public async Task A_space_that_received_a_merge_hibernates_and_resumes_beside_its_retired_self()
    {
        // After merge_into the id belongs to the winner, while the sandbox it replaced is retired
        // with its cgroup and layers until its forks end: the resume must not take those over.
        await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Persistent = true });
        await sb.RunCodeAsync("x = 1");
        var child = (await sb.ForkAsync(1))[0];
        await child.RunCodeAsync("x = 2");
        await sb.MergeIntoAsync(child);
        Assert.Equal("hibernated", (await sb.HibernateAsync()).State);
        Assert.Equal("2", (await sb.RunCodeAsync("print(x)")).Stdout.Trim());
        Assert.Equal("2", (await sb.RunCodeAsync("print(x)")).Stdout.Trim());
    }

    private string State(string id) => fx.Server.Sandboxes.Describe(id).State;
}
