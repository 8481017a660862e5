using Forkbox.Core.Wire;
using System.Security.Cryptography;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>The files API: uploads, downloads, listings and deletes resolved inside the sandbox.</summary>
[Collection(ServerCollection.Name)]
public sealed class FileTests(ServerFixture fx)
{
    [Fact]
    public async Task A_256KB_upload_downloads_byte_identical_and_is_listed()
    {
        await using var sb = await fx.NewSandbox();
        var data = RandomNumberGenerator.GetBytes(256 * 1024);
        await sb.UploadAsync("/root/data/blob.bin", data);
        Assert.Equal(data, await sb.DownloadAsync("/root/data/blob.bin"));
        var entry = Assert.Single(await sb.ListAsync("/root/data"));
        Assert.Equal(("blob.bin", "file", 256L * 1024), (entry.Name, entry.Type, entry.Size));
        var seen = await sb.RunCodeAsync("import hashlib; hashlib.sha256(open('/root/data/blob.bin','rb').read()).hexdigest()");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), seen.Result!.Value.GetString());
    }

    [Fact]
    public async Task A_download_streams_with_its_length_and_one_the_client_drops_halfway_leaves_the_sandbox_answering()
    {
        await using var sb = await fx.NewSandbox();
        const int size = 48 << 20;
        Assert.Equal(0, (await sb.ExecAsync($"head -c {size} /dev/urandom > /root/big")).ExitCode);
        using (var response = await fx.Http.GetAsync($"/v1/sandboxes/{sb.Id}/files?path=/root/big", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(size, response.Content.Headers.ContentLength);
            await using var body = await response.Content.ReadAsStreamAsync();
            var first = new byte[1 << 20];
            await body.ReadExactlyAsync(first);
        } // dropped with 47 MiB unread: hostd must still read them all from the agent, or the channel is out of step

        var after = await sb.RunCodeAsync("import os; os.path.getsize('/root/big')");
        Assert.True(after.ExitCode == 0, after.Stderr);
        Assert.Equal(size, after.Result!.Value.GetInt32());
        var whole = await sb.DownloadAsync("/root/big");
        var sum = await sb.RunCodeAsync("import hashlib; hashlib.sha256(open('/root/big','rb').read()).hexdigest()");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(whole)), sum.Result!.Value.GetString());
    }

    [Fact]
    public async Task Relative_paths_are_taken_from_root_and_deletes_work()
    {
        await using var sb = await fx.NewSandbox();
        await sb.UploadAsync("notes.txt", "hi"u8.ToArray());
        Assert.Equal("hi", (await sb.ExecAsync("cat /root/notes.txt")).Stdout);
        await sb.DeleteFileAsync("/root/notes.txt");
        var gone = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/notes.txt"));
        Assert.Equal((404, "file_not_found"), (gone.Status, gone.Code));
    }

    [Fact]
    public async Task Symlinks_resolve_inside_the_sandbox_not_on_the_host()
    {
        await using var sb = await fx.NewSandbox();
        await sb.ExecAsync("ln -s / /root/hostroot; ln -s /etc/hostname /root/name");
        Assert.Equal("sandbox\n", System.Text.Encoding.UTF8.GetString(await sb.DownloadAsync("/root/hostroot/etc/hostname")));
        var listing = await sb.ListAsync("/root/hostroot");
        Assert.DoesNotContain(listing, e => e.Name is "work" or "farm" or "old_root");
        // Writing through a link lands in the sandbox's own layer.
        await sb.UploadAsync("/root/hostroot/tmp/through-link", "x"u8.ToArray());
        Assert.Equal("x", (await sb.ExecAsync("cat /tmp/through-link")).Stdout);
        Assert.False(File.Exists("/tmp/through-link"));
    }

    [Fact]
    public async Task Named_pipes_sockets_and_devices_are_refused_at_once_and_the_sandbox_keeps_answering()
    {
        await using var sb = await fx.NewSandbox();
        // A pipe no one writes, a bound socket no one serves, and a device: opening the pipe to read
        // it would block the agent's call loop for good, and every later call on the sandbox with it.
        var made = await sb.RunCodeAsync("""
            import os, socket
            os.mkfifo("/root/fifo")
            s = socket.socket(socket.AF_UNIX); s.bind("/root/sock")
            """);
        Assert.True(made.ExitCode == 0, made.Stderr);
        var kinds = new Dictionary<string, string> { ["/root/fifo"] = "a named pipe", ["/root/sock"] = "a socket", ["/dev/zero"] = "a character device" };
        foreach (var (path, kind) in kinds)
        {
            using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var download = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync(path, quick.Token));
            Assert.Equal((400, "bad_request"), (download.Status, download.Code));
            Assert.Contains($"{path}: it is {kind}", download.Message);
            var upload = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.UploadAsync(path, "x"u8.ToArray(), quick.Token));
            Assert.Equal(400, upload.Status);
            Assert.Contains(kind, upload.Message);
        }
        var after = await sb.RunCodeAsync("import os, stat; [stat.S_ISFIFO(os.lstat('/root/fifo').st_mode), stat.S_ISSOCK(os.lstat('/root/sock').st_mode)]");
        Assert.Equal("[true,true]", after.Result!.Value.GetRawText()); // the refused uploads replaced nothing
        await sb.PauseAsync();
        await sb.ResumeAsync();
    }

    [Fact]
    public async Task An_upload_onto_a_symlink_writes_the_file_it_points_to()
    {
        await using var sb = await fx.NewSandbox();
        await sb.ExecAsync("echo old > /root/target.txt; ln -s target.txt /root/link.txt");
        await sb.UploadAsync("/root/link.txt", "new"u8.ToArray());
        Assert.Equal("new", (await sb.ExecAsync("test -L /root/link.txt && cat /root/target.txt")).Stdout);
    }

    [Fact]
    public async Task File_errors_have_the_right_status()
    {
        await using var sb = await fx.NewSandbox();
        var missing = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/nope"));
        Assert.Equal(404, missing.Status);
        var dir = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root"));
        Assert.Equal(400, dir.Status);
        var listMissing = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ListAsync("/nope"));
        Assert.Equal(404, listMissing.Status);
        var denied = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.UploadAsync("/usr/bin/python3", "x"u8.ToArray()));
        Assert.Equal(400, denied.Status);
        Assert.Equal(0, (await sb.ExecAsync("python3 -c 'print(1)'")).ExitCode);
    }

    [Theory]
    [InlineData("/")]
    [InlineData("/root")]
    [InlineData("/root/")]
    public async Task Deleting_root_or_the_working_directory_is_refused_and_the_repl_keeps_working(string path)
    {
        await using var sb = await fx.NewSandbox();
        await sb.UploadAsync("/root/kept.txt", "kept"u8.ToArray());
        var refused = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DeleteFileAsync(path, recursive: true));
        Assert.Equal(400, refused.Status);
        Assert.Contains("the directory the REPL and commands run in", refused.ServerMessage);
        Assert.Equal("kept", (await sb.RunCodeAsync("open('kept.txt').read()")).Result!.Value.GetString());
        await sb.DeleteFileAsync("/root/kept.txt"); // what is in it can go
    }

    [Fact]
    public async Task The_repl_survives_its_working_directory_being_deleted_by_user_code()
    {
        await using var sb = await fx.NewSandbox();
        Assert.Equal(0, (await sb.ExecAsync("cd / && rm -rf /root")).ExitCode);
        var homeless = await sb.RunCodeAsync("import os\nos.getcwd()");
        Assert.Equal("/", homeless.Result!.Value.GetString());
        Assert.Equal(0, (await sb.ExecAsync("pwd")).ExitCode);
        await sb.ExecAsync("mkdir /root");
        Assert.Equal("/root", (await sb.RunCodeAsync("os.getcwd()")).Result!.Value.GetString());
        await sb.UploadAsync("/root/back.txt", "back"u8.ToArray());
        Assert.Equal("back", (await sb.RunCodeAsync("open('back.txt').read()")).Result!.Value.GetString());
        Assert.Equal("back", (await sb.ExecAsync("cat back.txt")).Stdout);
    }

    [Theory]
    [InlineData("python")]
    [InlineData("bash")]
    public async Task A_missing_cwd_says_so(string language)
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunAsync(new ExecRequest { Code = "print(1)", Language = language, Cwd = "/no/such/dir" });
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("forkbox: cwd /no/such/dir is not a directory in the sandbox", r.Stderr);
    }
}
