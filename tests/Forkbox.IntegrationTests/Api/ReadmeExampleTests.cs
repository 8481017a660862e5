using Forkbox.Examples;

namespace Forkbox.IntegrationTests.Api;

/// <summary>The README's C# example is examples/csharp/ReadmeExample.cs, shown verbatim, and it runs.</summary>
[Collection(ServerCollection.Name)]
public sealed class ReadmeExampleTests(ServerFixture fx)
{
    [Fact]
    public async Task The_readme_shows_the_example_as_it_is_and_it_runs()
    {
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        var source = File.ReadAllLines(Path.Combine(root, "examples/csharp/ReadmeExample.cs"));
        var begin = Array.FindIndex(source, l => l.Trim() == "// README begin");
        var end = Array.FindIndex(source, l => l.Trim() == "// README end");
        Assert.True(begin >= 0 && end > begin, "the example lost its README markers");
        var shown = string.Join('\n', source[(begin + 1)..end].Select(l => l.Length >= 8 ? l[8..] : l.TrimStart()));
        var readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        Assert.True(readme.Contains("```csharp\n" + shown + "\n```", StringComparison.Ordinal),
            "README.md's C# SDK example differs from examples/csharp/ReadmeExample.cs; copy the lines between the markers into it");

        Assert.Equal(164, await ReadmeExample.RunAsync(fx.Client));
    }
}
