using Forkbox.Core.Wire;
using Forkbox.UnitTests.Host.Agents;

namespace Forkbox.UnitTests.Core;

/// <summary>The MIME types the agent puts in a bundle (forkbox_agent/rich.py) against <see cref="ResultMime"/>'s table.</summary>
[Trait("Root", "not needed")]
public sealed class ResultMimeTests
{
    [Fact]
    public void Every_type_the_agent_makes_has_an_E2B_field_and_the_binary_ones_are_base64()
    {
        var lines = AgentProtocolContractTests_without_root.RunPython("""
            from forkbox_agent import rich
            print(" ".join(["text/plain"] + [mime for mime, _ in rich.REPR_METHODS]))
            print(" ".join(sorted(rich.BINARY)))
            """);
        var made = lines[0].Split(' ');
        Assert.All(made, mime => Assert.NotNull(ResultMime.E2bField(mime)));
        Assert.Equal(made.Where(ResultMime.IsBase64).Order(StringComparer.Ordinal), lines[1].Split(' '));
        Assert.Equal(["text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "json", "javascript"], made.Select(m => ResultMime.E2bField(m)!));
        Assert.Null(ResultMime.E2bField("application/vnd.custom+json"));
    }
}
