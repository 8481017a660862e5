using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>
/// The REPL as a notebook user meets it, through POST /v1/sandboxes/{id}/exec on the real server,
/// checked on the NDJSON lines as they come: bytes on sys.stdout.buffer, tracebacks without the
/// agent's frames, top-level await, results' data_kind and MIME bundles, matplotlib figures.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed partial class RichResultTests(ServerFixture fx)
{
    private static readonly byte[] PngMagic = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>The stream's lines, each parsed, of a rich exec of <paramref name="code"/>.</summary>
    private async Task<List<JsonElement>> ExecLines(Sandbox sb, string code, bool rich = true)
    {
        using var resp = await fx.Http.PostAsJsonAsync($"/v1/sandboxes/{sb.Id}/exec", new { code, rich });
        var body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.IsSuccessStatusCode, $"{(int)resp.StatusCode}: {body}");
        Assert.Equal("application/x-ndjson", resp.Content.Headers.ContentType?.MediaType);
        return body.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
    }

    private static JsonElement Only(List<JsonElement> lines, string type)
    {
        var found = lines.Where(l => l.GetProperty("type").GetString() == type).ToList();
        Assert.True(found.Count == 1, $"{found.Count} '{type}' lines in {string.Join("\n", lines)}");
        return found[0];
    }

    private static void AssertExit(int expected, List<JsonElement> lines) =>
        Assert.True(Only(lines, "exit").GetProperty("data").GetInt32() == expected, $"not exit {expected}: {string.Join("\n", lines)}");

    private static string[] Texts(List<JsonElement> lines, string type) =>
        lines.Where(l => l.GetProperty("type").GetString() == type).Select(l => l.GetProperty("data").GetString()!).ToArray();

    [Fact]
    public async Task Bytes_written_to_sys_stdout_buffer_and_sys_stderr_buffer_arrive_as_lines()
    {
        await using var sb = await fx.NewSandbox();
        var lines = await ExecLines(sb, "import sys\nsys.stdout.buffer.write(b'hi\\n')\nsys.stderr.buffer.write(b'err\\n')\n"
                                        + "print('text', end=' '); sys.stdout.buffer.write(b'and bytes\\n')\nNone");
        AssertExit(0, lines);
        Assert.Equal(["hi", "text and bytes"], Texts(lines, "stdout"));
        Assert.Equal(["err"], Texts(lines, "stderr"));
    }

    [Fact]
    public async Task A_syntax_error_shows_the_users_line_and_caret_and_no_frame_of_the_agent()
    {
        await using var sb = await fx.NewSandbox();
        var lines = await ExecLines(sb, "x = 1\ny = (2,\nz = 3");
        AssertExit(1, lines);
        var error = Only(lines, "error");
        Assert.Equal("SyntaxError", error.GetProperty("name").GetString());
        var tb = error.GetProperty("traceback").GetString()!;
        Assert.Matches(CellSyntaxError(), tb);
        Assert.DoesNotContain("forkbox_agent", tb);
        Assert.DoesNotContain("ast.py", tb);
        Assert.Equal(tb.TrimEnd('\n').Split('\n'), Texts(lines, "stderr"));
    }

    [Fact]
    public async Task An_exceptions_traceback_starts_in_the_cell_with_no_frame_of_the_agent()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("def f():\n    return {}['missing']");
        var lines = await ExecLines(sb, "import asyncio\nasync def g():\n    f()\nawait g()");
        var tb = Only(lines, "error").GetProperty("traceback").GetString()!;
        Assert.StartsWith("Traceback (most recent call last):\n  File \"<cell-", tb);
        Assert.Contains("in g\n", tb);
        Assert.Contains("in f\n", tb);
        Assert.EndsWith("KeyError: 'missing'\n", tb);
        Assert.DoesNotContain("forkbox_agent", tb);
        Assert.DoesNotContain("asyncio", tb);
    }

    [Fact]
    public async Task A_cell_awaits_at_its_top_level_on_a_loop_that_persists()
    {
        await using var sb = await fx.NewSandbox();
        var lines = await ExecLines(sb, "import asyncio\nawait asyncio.sleep(0.1); 1+1");
        AssertExit(0, lines);
        var result = Only(lines, "result");
        Assert.Equal(2, result.GetProperty("data").GetInt32());
        Assert.Equal("json", result.GetProperty("data_kind").GetString());

        await ExecLines(sb, "await asyncio.sleep(0)\nloop = asyncio.get_running_loop()\ntask = asyncio.create_task(asyncio.sleep(0.05, 'done later'))");
        var later = await ExecLines(sb, "await asyncio.sleep(0.2)\n[task.result(), asyncio.get_running_loop() is loop]");
        Assert.Equal("""["done later",true]""", Only(later, "result").GetProperty("data").GetRawText());
    }

    [Fact]
    public async Task A_fork_of_a_sandbox_whose_cells_awaited_awaits_on_a_loop_of_its_own()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("import asyncio\nawait asyncio.sleep(0)\nparent_loop = id(asyncio.get_running_loop())");
        var forks = await sb.ForkAsync(1);
        await using var child = forks[0];
        var inChild = await ExecLines(child, "await asyncio.sleep(0.05)\nid(asyncio.get_running_loop()) != parent_loop");
        Assert.True(Only(inChild, "result").GetProperty("data").GetBoolean(), string.Join("\n", inChild));
        var inParent = await ExecLines(sb, "await asyncio.sleep(0.05)\nid(asyncio.get_running_loop()) == parent_loop");
        Assert.True(Only(inParent, "result").GetProperty("data").GetBoolean(), string.Join("\n", inParent));
    }

    [Fact]
    public async Task A_result_says_whether_its_data_is_json_or_a_repr()
    {
        await using var sb = await fx.NewSandbox();
        var json = Only(await ExecLines(sb, "'hi'"), "result");
        Assert.Equal(("hi", "json"), (json.GetProperty("data").GetString(), json.GetProperty("data_kind").GetString()));
        Assert.Equal("'hi'", json.GetProperty("mime").GetProperty("text/plain").GetString());
        var repr = Only(await ExecLines(sb, "class P:\n    def __repr__(self): return 'P()'\nP()"), "result");
        Assert.Equal(("P()", "repr"), (repr.GetProperty("data").GetString(), repr.GetProperty("data_kind").GetString()));
    }

    [Fact]
    public async Task Hostd_passes_on_only_the_result_shapes_it_promises_whatever_the_agent_sends()
    {
        await using var sb = await fx.NewSandbox();
        // User code can send frames as the agent: data_kind and mime of any shape, displays flooding past the limit.
        var lines = await ExecLines(sb, """
            import sys
            agent = sys.stdout.sink.agent
            agent.chan.send({'ev': 'result', 'id': agent.call_id, 'repr': '', 'kind': 'x', 'data': [1], 'data_kind': 'pickle',
                             'mime': {'text/html': ['not', 'text'], 'image/png': 'iVBO', 'application/json': {'ok': True}}})
            agent.chan.send({'ev': 'result', 'id': agent.call_id, 'repr': '', 'kind': 'x', 'data': 'r', 'mime': 'not an object'})
            agent.chan.send({'ev': 'display', 'id': agent.call_id, 'mime': 5})
            for _ in range(40):
                agent.chan.send({'ev': 'display', 'id': agent.call_id, 'mime': {'image/png': 'A' * 1_000_000}})
            """);
        AssertExit(0, lines);
        var results = lines.Where(l => l.GetProperty("type").GetString() == "result").ToList();
        Assert.Equal(2, results.Count);
        Assert.Equal("json", results[0].GetProperty("data_kind").GetString());
        Assert.Equal("""{"image/png":"iVBO","application/json":{"ok":true}}""", results[0].GetProperty("mime").GetRawText());
        Assert.Equal("repr", results[1].GetProperty("data_kind").GetString());
        Assert.False(results[1].TryGetProperty("mime", out _));
        var displayed = lines.Where(l => l.GetProperty("type").GetString() == "display").Sum(l => l.GetProperty("mime").GetRawText().Length);
        Assert.InRange(displayed, 1, fx.Options.Limits.OutputLimitBytes);
        Assert.Contains("[forkbox: output truncated by hostd at the output limit]", Texts(lines, "stderr"));
    }

    [Fact]
    public async Task A_result_carries_the_mime_bundle_of_its_repr_methods()
    {
        await using var sb = await fx.NewSandbox();
        var lines = await ExecLines(sb, """
            class Rich:
                def __repr__(self): return 'Rich()'
                def _repr_html_(self): return '<b>rich</b>'
                def _repr_svg_(self): return '<svg xmlns="http://www.w3.org/2000/svg"/>'
                def _repr_png_(self): return b'\x89PNG\r\n\x1a\n'
                def _repr_json_(self): return {'a': [1, 2]}
            class Bundled:
                def _repr_mimebundle_(self, include=None, exclude=None):
                    return {'text/plain': 'a bundle', 'text/html': '<i>b</i>'}
            rich = Rich()
            rich
            """);
        var mime = Only(lines, "result").GetProperty("mime");
        Assert.Equal("Rich()", mime.GetProperty("text/plain").GetString());
        Assert.Equal("<b>rich</b>", mime.GetProperty("text/html").GetString());
        Assert.Equal("<svg xmlns=\"http://www.w3.org/2000/svg\"/>", mime.GetProperty("image/svg+xml").GetString());
        Assert.Equal(PngMagic, Convert.FromBase64String(mime.GetProperty("image/png").GetString()!));
        Assert.Equal("""{"a":[1,2]}""", mime.GetProperty("application/json").GetRawText());

        var bundled = Only(await ExecLines(sb, "Bundled()"), "result").GetProperty("mime");
        Assert.Equal("""{"text/plain":"a bundle","text/html":"<i>b</i>"}""", bundled.GetRawText());

        // The C# SDK gives the same.
        var r = await sb.RunCodeAsync("rich");
        Assert.Equal(("repr", "<b>rich</b>"), (r.ResultKind, r.ResultMime!["text/html"].GetString()));
    }

    [SkippableFact]
    public async Task Matplotlib_figures_come_back_as_image_png()
    {
        await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Template = "python-datasci" });
        var probe = await sb.RunCodeAsync("import importlib.util\nimportlib.util.find_spec('matplotlib') is not None");
        var missing = probe.Result?.GetBoolean() == true ? null
            : "matplotlib is not installed on this host (scripts/setup.sh installs python3-matplotlib for python-datasci)";
        if (missing is not null) Console.WriteLine($"skipped: {missing}");
        Skip.If(missing is not null, missing);

        var shown = await ExecLines(sb, "import matplotlib.pyplot as plt\nprint('before')\nplt.plot([1, 3, 2])\nplt.show()\nprint('after')");
        AssertExit(0, shown);
        Console.WriteLine($"matplotlib's first import in a sandbox wrote to stderr: [{string.Join(" | ", Texts(shown, "stderr"))}]");
        Assert.Equal(["stdout", "display", "stdout", "exit"],
            shown.Select(l => l.GetProperty("type").GetString()).Where(t => t != "stderr"));
        var display = Only(shown, "display").GetProperty("mime");
        Assert.StartsWith("<Figure size", display.GetProperty("text/plain").GetString());
        Assert.Equal(PngMagic, Convert.FromBase64String(display.GetProperty("image/png").GetString()!)[..8]);

        var asValue = await ExecLines(sb, "fig, ax = plt.subplots()\nax.plot([2, 1])\nfig");
        var result = Only(asValue, "result");
        Assert.Equal("repr", result.GetProperty("data_kind").GetString());
        Assert.Equal(PngMagic, Convert.FromBase64String(result.GetProperty("mime").GetProperty("image/png").GetString()!)[..8]);
        Assert.DoesNotContain(asValue, l => l.GetProperty("type").GetString() == "display"); // not sent twice

        var r = await sb.RunCodeAsync("plt.plot([1, 2]); plt.show()");
        Assert.Equal(PngMagic, Convert.FromBase64String(Assert.Single(r.Displays)["image/png"].GetString()!)[..8]);
    }

    [GeneratedRegex("""^  File "<cell-\d+>", line 2\n    y = \(2,\n        \^\nSyntaxError: '\(' was never closed\n$""")]
    private static partial Regex CellSyntaxError();
}
