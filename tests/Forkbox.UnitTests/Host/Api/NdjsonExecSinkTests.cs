using System.Text;
using System.Text.Json;
using Forkbox.Host.Api;
using Microsoft.AspNetCore.Http;

namespace Forkbox.UnitTests.Host.Api;

/// <summary>The exec stream's result and display lines as the client reads them.</summary>
[Trait("Root", "not needed")]
public sealed class NdjsonExecSinkTests
{
    private static async Task<JsonElement[]> Lines(Action<NdjsonExecSink> write)
    {
        var context = new DefaultHttpContext();
        var body = new MemoryStream();
        context.Response.Body = body;
        var sink = new NdjsonExecSink(context.Response);
        write(sink);
        await sink.FlushAsync(CancellationToken.None);
        return Encoding.UTF8.GetString(body.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToArray();
    }

    private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement.Clone();

    [Fact]
    public async Task A_result_has_its_data_data_kind_and_mime()
    {
        var line = Assert.Single(await Lines(s => s.Result(Parse("42"), "json", Parse("""{"text/plain":"42"}"""))));
        Assert.Equal("result", line.GetProperty("type").GetString());
        Assert.Equal(42, line.GetProperty("data").GetInt32());
        Assert.Equal("json", line.GetProperty("data_kind").GetString());
        Assert.Equal("""{"text/plain":"42"}""", line.GetProperty("mime").GetRawText());
        Assert.Equal(0, line.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task A_bundle_keeps_text_entries_and_json_for_json_types_only_once_each()
    {
        var mime = Parse("""
            {"text/plain":"x","image/png":"iVBO","text/html":{"not":"text"},"application/json":{"a":[1]},
             "application/vnd.x+json":[1,2],"image/svg+xml":7,"text/plain":"again"}
            """);
        var lines = await Lines(s =>
        {
            s.Result(Parse("\"x\""), "repr", mime);
            s.Display(mime);
        });
        const string Kept = """{"text/plain":"x","image/png":"iVBO","application/json":{"a":[1]},"application/vnd.x+json":[1,2]}""";
        Assert.Equal(Kept, lines[0].GetProperty("mime").GetRawText());
        Assert.Equal("display", lines[1].GetProperty("type").GetString());
        Assert.Equal(Kept, lines[1].GetProperty("mime").GetRawText());
        Assert.False(lines[1].TryGetProperty("data", out _));
    }

    [Fact]
    public async Task A_result_without_a_bundle_has_no_mime()
    {
        var line = Assert.Single(await Lines(s => s.Result(Parse("\"r\""), "repr", null)));
        Assert.False(line.TryGetProperty("mime", out _));
        Assert.Equal("repr", line.GetProperty("data_kind").GetString());
    }
}
