using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// pip in the default template: with egress it installs from an index (one the test serves on its
/// test host, a PEP 503 simple index with a wheel the test builds), as root and with --user, past
/// Debian's PEP 668 marker; without network it fails at once, saying why.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class PipTests(NetworkFixture fx)
{
    private const string Project = "forkbox-probe";
    private const string Module = "forkbox_probe";
    private const string Greeting = "hello from a wheel the test built";

    /// <summary>Puts the wheel and its simple index on the test host; the index URL to give pip.</summary>
    private string ServeIndex()
    {
        var wheelName = $"{Module}-1.0-py3-none-any.whl";
        var wheel = Wheel();
        var sha = Convert.ToHexStringLower(SHA256.HashData(wheel));
        fx.TestHost.Serve($"packages/{wheelName}", wheel);
        fx.TestHost.Serve("simple/index.html", Encoding.UTF8.GetBytes($"<!DOCTYPE html><html><body><a href=\"{Project}/\">{Project}</a></body></html>"));
        fx.TestHost.Serve($"simple/{Project}/index.html",
            Encoding.UTF8.GetBytes($"<!DOCTYPE html><html><body><a href=\"../../packages/{wheelName}#sha256={sha}\">{wheelName}</a></body></html>"));
        return $"http://{fx.TestHost.Address}:{TestNetworkHost.Port}/simple/";
    }

    /// <summary>A pure-Python wheel (PEP 427), made by hand: one module, METADATA, WHEEL and a RECORD with each file's hash.</summary>
    private static byte[] Wheel()
    {
        var info = $"{Module}-1.0.dist-info";
        var files = new (string Path, string Text)[]
        {
            ($"{Module}.py", $"GREETING = \"{Greeting}\"\n"),
            ($"{info}/METADATA", $"Metadata-Version: 2.1\nName: {Project}\nVersion: 1.0\nSummary: a test package\n"),
            ($"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: forkbox-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        };
        var record = new StringBuilder();
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (path, text) in files)
            {
                var bytes = Encoding.UTF8.GetBytes(text);
                using (var entry = zip.CreateEntry(path).Open()) entry.Write(bytes);
                var hash = Convert.ToBase64String(SHA256.HashData(bytes)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
                record.Append($"{path},sha256={hash},{bytes.Length}\n");
            }
            record.Append($"{info}/RECORD,,\n");
            using var recordEntry = zip.CreateEntry($"{info}/RECORD").Open();
            recordEntry.Write(Encoding.UTF8.GetBytes(record.ToString()));
        }
        return buffer.ToArray();
    }

    [Fact]
    public async Task With_egress_pip_install_and_pip_install_user_install_from_an_index_into_the_sandbox()
    {
        var index = ServeIndex();
        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest
        {
            Network = NetworkModes.Egress,
            Env = new() { ["PIP_INDEX_URL"] = index, ["PIP_TRUSTED_HOST"] = fx.TestHost.Address },
        }, fx.Client);

        var install = await sb.ExecAsync($"pip install {Project} 2>&1");
        Assert.True(install.ExitCode == 0, $"pip install: exit {install.ExitCode}: {install.Stdout}");
        Assert.DoesNotContain("externally-managed", install.Stdout);
        Assert.DoesNotContain("WARNING: Running pip as the 'root' user", install.Stdout);
        var imported = await sb.ExecAsync($"python3 -c 'import {Module}; print({Module}.GREETING); print({Module}.__file__)'");
        Assert.Equal([Greeting, $"/usr/local/lib/python3.{PythonMinor()}/dist-packages/{Module}.py"], imported.StdoutLines);

        var user = await sb.ExecAsync($"pip install --user --force-reinstall {Project} 2>&1");
        Assert.True(user.ExitCode == 0, $"pip install --user: exit {user.ExitCode}: {user.Stdout}");
        var fromUser = await sb.ExecAsync($"python3 -c 'import {Module}; print({Module}.__file__)'");
        Assert.Equal($"/root/.local/lib/python3.{PythonMinor()}/site-packages/{Module}.py", fromUser.Stdout.Trim());

        // The template itself is untouched: a new sandbox has neither.
        await using var other = await fx.NewSandbox();
        Assert.Equal(1, (await other.ExecAsync($"python3 -c 'import {Module}'")).ExitCode);
    }

    [Fact]
    public async Task Without_network_pip_fails_at_once_and_says_the_sandbox_has_network_none()
    {
        var index = ServeIndex();
        await using var sb = await fx.NewSandbox();
        foreach (var command in new[] { $"pip install {Project}", $"pip install --user {Project}", $"pip install --index-url {index} --trusted-host {fx.TestHost.Address} {Project}" })
        {
            var clock = Stopwatch.StartNew();
            var run = await sb.ExecAsync(command + " 2>&1");
            clock.Stop();
            Assert.NotEqual(0, run.ExitCode);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"{command}: failed after {clock.Elapsed.TotalSeconds:F1} s: {run.Stdout}");
            Assert.DoesNotContain("externally-managed", run.Stdout);
            if (!command.Contains("--index-url", StringComparison.Ordinal))
            {
                Assert.Contains("this-sandbox-has-network-none", run.Stdout);
                Assert.Contains("create-it-with-network-egress", run.Stdout);
            }
        }
        var conf = (await sb.ExecAsync("cat /etc/pip.conf")).Stdout;
        Assert.Contains("\"network\": \"none\"", conf);

        // What the file says works there: a wheel uploaded installs without an index.
        await sb.UploadAsync($"/root/{Module}-1.0-py3-none-any.whl", Wheel());
        var offline = await sb.ExecAsync($"pip install /root/{Module}-1.0-py3-none-any.whl 2>&1 && python3 -c 'import {Module}; print({Module}.GREETING)'");
        Assert.True(offline.ExitCode == 0, $"pip install of an uploaded wheel: exit {offline.ExitCode}: {offline.Stdout}");
        Assert.Equal(Greeting, offline.StdoutLines[^1]);
    }

    [Fact]
    public async Task A_resumed_egress_sandbox_keeps_the_pip_conf_it_was_given()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress, persistent: true);
        Assert.DoesNotContain("network-none", (await sb.ExecAsync("cat /etc/pip.conf")).Stdout);
        const string Mine = "[global]\nindex-url = https://index.example.test/simple\n";
        await sb.UploadAsync("/etc/pip.conf", Encoding.UTF8.GetBytes(Mine));
        await sb.HibernateAsync();
        await sb.ResumeAsync();
        Assert.Equal(Mine, Encoding.UTF8.GetString(await sb.DownloadAsync("/etc/pip.conf")));
    }

    private static string PythonMinor() => Directory.GetDirectories("/usr/lib", "python3.*")
        .Select(Path.GetFileName).Where(n => File.Exists($"/usr/lib/{n}/os.py")).Select(n => n!["python3.".Length..]).Single();
}
