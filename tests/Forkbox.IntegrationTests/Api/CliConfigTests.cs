using System.Diagnostics;

namespace Forkbox.IntegrationTests.Api;

/// <summary>Every command that reads the server's configuration refuses a bad file the same way: a line naming it, exit 2, no stack.</summary>
public sealed class CliConfigTests
{
    [Theory]
    [InlineData("serve")]
    [InlineData("keys create --name ci")]
    [InlineData("template build t --from /nonexistent")]
    public async Task A_config_file_with_an_unknown_key_is_one_line_naming_it_and_exit_2(string command)
    {
        var dir = Directory.CreateTempSubdirectory("forkbox-test-cliconfig-").FullName;
        try
        {
            var config = Path.Combine(dir, "config.json");
            await File.WriteAllTextAsync(config, """{ "Spaces": { "PauseAftrS": 60 } }""");
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "forkbox.dll"));
            foreach (var arg in command.Split(' ')) psi.ArgumentList.Add(arg);
            foreach (var arg in new[] { "--config", config, "--data-dir", dir }) psi.ArgumentList.Add(arg);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            await p.StandardOutput.ReadToEndAsync();
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var text = (await stderr).Trim();
            Assert.True(p.ExitCode == 2, $"exit {p.ExitCode}: {text}");
            Assert.Equal($"forkbox {command.Split(' ')[0]}{(command.StartsWith("serve") ? "" : " " + command.Split(' ')[1])}: config file {config}: unknown key 'Spaces.PauseAftrS' (did you mean 'Spaces.PauseAfterS'?)", text);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
