using System.Diagnostics;

namespace Forkbox.IntegrationTests;

/// <summary>The host's python3, as the tests' own user (root): what a test does or reads on the host, outside any sandbox.</summary>
public static class HostPython
{
    /// <summary>Runs python3 with <paramref name="args"/> and returns what it printed; a non-zero exit throws with its stderr.</summary>
    public static string Run(params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo("/usr/bin/python3", args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"python3 on the host exited {p.ExitCode}: {stderr}");
        return stdout.Result;
    }

    /// <summary>Runs <paramref name="code"/> (python3 -c) with <paramref name="args"/> as its sys.argv[1:].</summary>
    public static string Code(string code, params string[] args) => Run(["-c", code, .. args]);
}
