using System.Diagnostics;

namespace Forkbox.Linux.Network;

/// <summary>
/// Runs iproute2 (`ip`, `tc`) in batch mode, on the host or inside a sandbox's network namespace
/// (through `nsenter --net=/proc/PID/ns/net`). Only on the slow paths: pool refills, misses, forks.
/// </summary>
internal static class NetTool
{
    /// <summary>Runs `tool -batch -` with <paramref name="batch"/> on its stdin, in the netns of <paramref name="netnsPid"/> when given.</summary>
    public static async Task RunBatchAsync(string tool, string batch, int? netnsPid = null, bool force = false)
    {
        var psi = new ProcessStartInfo(netnsPid is null ? tool : "nsenter")
        {
            RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false,
        };
        if (netnsPid is { } pid)
        {
            psi.ArgumentList.Add($"--net=/proc/{pid}/ns/net");
            psi.ArgumentList.Add("--");
            psi.ArgumentList.Add(tool);
        }
        if (force) psi.ArgumentList.Add("-force");
        psi.ArgumentList.Add("-batch");
        psi.ArgumentList.Add("-");
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        await p.StandardInput.WriteAsync(batch).ConfigureAwait(false);
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync().ConfigureAwait(false);
        await p.WaitForExitAsync().ConfigureAwait(false);
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} failed ({p.ExitCode}): {(await stderr.ConfigureAwait(false)).Trim()}\n{batch}");
    }
}
