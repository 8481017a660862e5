using System.Diagnostics;

namespace Forkbox.IntegrationTests;

/// <summary>The real `forkbox` command (forkbox.dll) run once as a separate process, as a user runs it.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
    }

    /// <summary>Runs `forkbox ARGS`, feeding <paramref name="stdin"/> (none: an empty stdin), and waits at most 120 s.</summary>
    public static async Task<Result> RunAsync(IEnumerable<string> args, string? stdin = null, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "forkbox.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("FORKBOX_HOST");
        psi.Environment.Remove("FORKBOX_API_KEY");
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        try
        {
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(120));
        }
        catch (TimeoutException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"forkbox {string.Join(' ', args)} did not finish within 120 s");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}
