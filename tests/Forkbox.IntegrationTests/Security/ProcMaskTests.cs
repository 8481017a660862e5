namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// /proc entries that describe the host's hardware are masked in sandboxes and forks, as Docker
/// masks them: files read empty (/dev/null bound over them), directories are an empty read-only
/// tmpfs; the read-only parts of /proc keep nosuid, nodev and noexec.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ProcMaskTests(ServerFixture fx)
{
    [Fact]
    public async Task Host_hardware_in_proc_is_masked_in_a_sandbox_and_its_fork()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using (fork)
            foreach (var box in new[] { sb, fork })
            {
                var r = await box.RunCodeAsync(SandboxProbe.Attempt + """
                    def options(target):
                        for line in open("/proc/self/mountinfo"):
                            f = line.split()
                            if f[4] == target:
                                return sorted(set(f[5].split(",")) & {"ro", "nosuid", "nodev", "noexec"})
                    {"interrupts": attempt(lambda: open("/proc/interrupts").read()),
                     "acpi": attempt(lambda: os.listdir("/proc/acpi")),
                     "acpi_write": attempt(lambda: os.mkdir("/proc/acpi/x")),
                     "sys": options("/proc/sys")}
                    """);
                var v = r.Result!.Value;
                Assert.Equal("\"\"", v.GetProperty("interrupts").GetRawText());
                Assert.Equal("[]", v.GetProperty("acpi").GetRawText());
                Assert.Contains(v.GetProperty("acpi_write").GetRawText(), new[] { "\"EROFS\"", "\"EACCES\"", "\"EPERM\"" });
                Assert.Equal("[\"nodev\",\"noexec\",\"nosuid\",\"ro\"]", v.GetProperty("sys").GetRawText());
            }
    }
}
