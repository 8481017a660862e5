using System.Net;
using System.Security.Cryptography;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Api;

/// <summary>
/// `forkbox sandbox …` and `forkbox keys …` as a user types them: the real CLI binary, run as its
/// own process against the real server, every flag checked by what the server then reports.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class CliTests(ServerFixture fx)
{
    private Task<CliProcess.Result> Cli(string? stdin, params string[] args) =>
        CliProcess.RunAsync([.. args, "--host", fx.Server.Address.ToString()], stdin);

    private async Task<string> CreateWithCli(params string[] flags)
    {
        var r = await Cli(null, ["sandbox", "create", .. flags]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }

    [Fact]
    public async Task Sandbox_create_takes_template_timeout_memory_cpus_env_and_network()
    {
        var id = await CreateWithCli("--template", "default", "--timeout", "120", "--memory", "256", "--cpus", "0.5",
            "--env", "GREETING=hello", "-e", "EQUATION=a=b", "--network", "none");
        await using var sb = await Sandbox.ConnectAsync(id, fx.Client);
        Assert.Equal("default", sb.Info.Template);
        Assert.Equal((256, 0.5), (sb.Info.Limits!.MemoryMb, sb.Info.Limits.Cpus));
        Assert.Equal("none", sb.Info.Network);
        Assert.InRange((sb.Info.ExpiresAt!.Value - sb.Info.CreatedAt).TotalSeconds, 119, 121);
        var env = await sb.RunCodeAsync("import os; [os.environ['GREETING'], os.environ['EQUATION']]");
        Assert.Equal("""["hello","a=b"]""", env.Result!.Value.GetRawText());
    }

    [Fact]
    public async Task Sandbox_create_passes_network_to_the_server_and_refuses_an_env_without_equals()
    {
        var network = await Cli(null, "sandbox", "create", "--network", "bogus");
        Assert.True(network.ExitCode == 1, network.ToString());
        Assert.Contains("network", network.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("bogus", network.Stderr, StringComparison.Ordinal);

        var env = await Cli(null, "sandbox", "create", "--env", "JUSTANAME");
        Assert.True(env.ExitCode == 1, env.ToString());
        Assert.Contains("--env wants KEY=VALUE, got 'JUSTANAME'", env.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Exec_reads_code_from_a_file_or_stdin_and_keeps_the_repl_between_calls()
    {
        var id = await CreateWithCli();
        var script = Path.Combine(Path.GetTempPath(), $"forkbox-cli-{Guid.NewGuid():N}.py");
        await File.WriteAllTextAsync(script, "x = 41\nprint('from the file')\n");
        try
        {
            var fromFile = await Cli(null, "sandbox", "exec", id, "--file", script);
            Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
            Assert.Equal("from the file", fromFile.Stdout.Trim());

            var fromStdin = await Cli("print(x + 1)\n", "sandbox", "exec", id, "-");
            Assert.True(fromStdin.ExitCode == 0, fromStdin.ToString());
            Assert.Equal("42", fromStdin.Stdout.Trim());

            var bashFromStdin = await Cli("echo one; exit 3\n", "sandbox", "exec", id, "--bash", "--file", "-");
            Assert.Equal((3, "one"), (bashFromStdin.ExitCode, bashFromStdin.Stdout.Trim()));

            var both = await Cli(null, "sandbox", "exec", id, "print(1)", "--file", script);
            Assert.Equal(1, both.ExitCode);
            Assert.Contains("not both", both.Stderr, StringComparison.Ordinal);

            var missing = await Cli(null, "sandbox", "exec", id, "--file", script + ".missing");
            Assert.Equal(1, missing.ExitCode);
            Assert.Contains(script + ".missing", missing.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", missing.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(script);
            await fx.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Exec_timeout_ends_the_call_at_its_own_limit()
    {
        var id = await CreateWithCli();
        try
        {
            var started = DateTime.UtcNow;
            var slow = await Cli(null, "sandbox", "exec", id, "--timeout", "1", "import time; time.sleep(30)");
            Assert.True(slow.ExitCode == 124, slow.ToString());
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20), $"took {DateTime.UtcNow - started}");
        }
        finally
        {
            await fx.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Files_upload_download_ls_and_rm_round_trip_a_file()
    {
        var id = await CreateWithCli();
        var dir = Directory.CreateTempSubdirectory("forkbox-cli-files-").FullName;
        try
        {
            var data = RandomNumberGenerator.GetBytes(300 * 1024);
            var local = Path.Combine(dir, "blob.bin");
            await File.WriteAllBytesAsync(local, data);
            var up = await Cli(null, "sandbox", "files", "upload", id, local, "/root/in/blob.bin");
            Assert.True(up.ExitCode == 0, up.ToString());
            var fromStdin = await Cli("typed in\n", "sandbox", "files", "upload", id, "-", "/root/in/note.txt");
            Assert.True(fromStdin.ExitCode == 0, fromStdin.ToString());

            var ls = await Cli(null, "sandbox", "files", "ls", id, "/root/in");
            Assert.True(ls.ExitCode == 0, ls.ToString());
            var lines = ls.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
            Assert.Contains(lines, l => l[0] == "file" && l[1] == (300 * 1024).ToString() && l[^1] == "blob.bin");
            Assert.Contains(lines, l => l[0] == "file" && l[1] == "9" && l[^1] == "note.txt");
            var root = await Cli(null, "sandbox", "files", "ls", id);
            Assert.Contains(root.Stdout.Split('\n'), l => l.StartsWith("dir", StringComparison.Ordinal) && l.EndsWith(" in/", StringComparison.Ordinal));

            var back = Path.Combine(dir, "back.bin");
            var down = await Cli(null, "sandbox", "files", "download", id, "/root/in/blob.bin", back);
            Assert.True(down.ExitCode == 0, down.ToString());
            Assert.Equal(data, await File.ReadAllBytesAsync(back));
            var toStdout = await Cli(null, "sandbox", "files", "download", id, "/root/in/note.txt");
            Assert.Equal("typed in\n", toStdout.Stdout);

            var missing = await Cli(null, "sandbox", "files", "download", id, "/root/in/nothing", Path.Combine(dir, "nothing"));
            Assert.Equal(1, missing.ExitCode);
            Assert.Contains("/root/in/nothing", missing.Stderr, StringComparison.Ordinal);
            Assert.Equal(["back.bin", "blob.bin"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());

            var rm = await Cli(null, "sandbox", "files", "rm", id, "/root/in/blob.bin");
            Assert.True(rm.ExitCode == 0, rm.ToString());
            var refused = await Cli(null, "sandbox", "files", "rm", id, "/root/in");
            Assert.Equal(1, refused.ExitCode);
            var recursive = await Cli(null, "sandbox", "files", "rm", id, "/root/in", "-r");
            Assert.True(recursive.ExitCode == 0, recursive.ToString());
            await using var sb = await Sandbox.ConnectAsync(id, fx.Client);
            Assert.DoesNotContain(await sb.ListAsync("/root"), e => e.Name == "in");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            await fx.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Rm_of_a_sandbox_already_gone_says_so_and_exits_0()
    {
        var id = await CreateWithCli();
        var first = await Cli(null, "sandbox", "rm", id);
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Equal("", first.Stderr);
        var again = await Cli(null, "sandbox", "rm", id);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains($"{id} was already gone", again.Stderr, StringComparison.Ordinal);
        var never = await Cli(null, "sandbox", "rm", "sbx_neverexisted");
        Assert.True(never.ExitCode == 0, never.ToString());
    }

    [Theory]
    [InlineData("sandbox merge", "<id> and <winner>")]
    [InlineData("sandbox diff", "<id> and <other>")]
    [InlineData("sandbox files upload", "<id> and <local> and <remote>")]
    [InlineData("sandbox rm", "<id>")]
    [InlineData("sandbox exec", "<id>")] // not "missing the code": the id comes first
    public async Task A_missing_argument_is_reported_once_by_name(string command, string names)
    {
        var r = await Cli(null, command.Split(' '));
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal($"forkbox {command}: missing {names} (see `forkbox {command} --help`)", line);
    }
}
