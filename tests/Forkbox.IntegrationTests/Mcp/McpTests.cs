using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Forkbox.IntegrationTests.Mcp;

/// <summary>
/// `forkbox mcp` against a real server, spoken to over stdio as a desktop client would: the
/// handshake, the tools and their schemas, state across calls, errors, forks by id, and the end
/// of the session closing every sandbox it made.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed partial class McpTests(ServerFixture fx, ITestOutputHelper output)
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Initialize_names_the_server_and_lists_every_tool_with_its_input_schema_without_making_a_sandbox()
    {
        var before = await SandboxIds();
        await using var mcp = McpProcess.Start(fx.Server.Address, output);

        var init = await mcp.InitializeAsync();
        Assert.Equal(McpProcess.ProtocolVersion, init["protocolVersion"]?.GetValue<string>());
        Assert.Equal("forkbox", init["serverInfo"]?["name"]?.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(init["serverInfo"]?["version"]?.GetValue<string>()));
        Assert.IsType<JsonObject>(init["capabilities"]?["tools"]);

        var tools = McpProcess.Result(await mcp.RequestAsync("tools/list"))["tools"]!.AsArray()
            .Select(t => t!.AsObject()).ToDictionary(t => t["name"]!.GetValue<string>());
        Assert.Equal(["close_sandbox", "download", "exec", "fork", "list_files", "run_code", "upload"], tools.Keys.Order());
        var required = new Dictionary<string, string[]>
        {
            ["run_code"] = ["code"], ["exec"] = ["command"], ["upload"] = ["path", "content"], ["download"] = ["path"],
            ["list_files"] = [], ["fork"] = [], ["close_sandbox"] = ["sandbox_id"],
        };
        foreach (var (name, tool) in tools)
        {
            Assert.True(tool["description"]?.GetValue<string>().Length > 40, $"{name} has a description a model can act on");
            var schema = tool["inputSchema"]!.AsObject();
            Assert.Equal("object", schema["type"]?.GetValue<string>());
            var properties = schema["properties"]!.AsObject();
            Assert.All(properties, p => Assert.False(string.IsNullOrEmpty(p.Value?["description"]?.GetValue<string>()), $"{name}.{p.Key} is described"));
            Assert.True(properties.ContainsKey("sandbox_id"), $"{name} takes sandbox_id");
            var req = schema["required"]?.AsArray().Select(r => r!.GetValue<string>()).Order().ToArray() ?? [];
            Assert.Equal(required[name].Order(), req);
        }
        Assert.Equal("string", tools["run_code"]["inputSchema"]!["properties"]!["code"]!["type"]!.GetValue<string>());
        Assert.True(tools["run_code"]["inputSchema"]!["properties"]!.AsObject().ContainsKey("timeout_s"));
        Assert.True(tools["exec"]["inputSchema"]!["properties"]!.AsObject().ContainsKey("cwd"));
        Assert.True(tools["upload"]["inputSchema"]!["properties"]!.AsObject().ContainsKey("base64"));
        var n = tools["fork"]["inputSchema"]!["properties"]!["n"]!;
        Assert.Equal(("integer", 1, 8), (n["type"]!.GetValue<string>(), n["minimum"]!.GetValue<int>(), n["maximum"]!.GetValue<int>()));

        Assert.Empty((await mcp.RequestAsync("ping"))["result"]!.AsObject());
        Assert.Equal(before.Order(), (await SandboxIds()).Order()); // nothing is made until a tool needs it
        Assert.Equal(0, await mcp.CloseInputAndWaitAsync(ExitTimeout));
        Assert.Empty(mcp.NonProtocolLines);
    }

    /// <summary>`forkbox mcp` driven by the official MCP SDK's client, its stderr lines kept in <paramref name="stderr"/>.</summary>
    private Task<ModelContextProtocol.Client.McpClient> SdkClient(System.Collections.Concurrent.ConcurrentQueue<string> stderr) =>
        ModelContextProtocol.Client.McpClient.CreateAsync(new ModelContextProtocol.Client.StdioClientTransport(new ModelContextProtocol.Client.StdioClientTransportOptions
        {
            Command = "dotnet",
            Arguments = [Path.Combine(AppContext.BaseDirectory, "forkbox.dll"), "mcp", "--host", fx.Server.Address.ToString()],
            EnvironmentVariables = new Dictionary<string, string?> { ["FORKBOX_HOST"] = null, ["FORKBOX_API_KEY"] = null },
            StandardErrorLines = line =>
            {
                stderr.Enqueue(line);
                output.WriteLine("mcp stderr: " + line);
            },
        }));

    [Fact]
    public async Task With_the_sdk_client_cancelling_a_tool_call_interrupts_its_code()
    {
        await using var client = await SdkClient(new());
        await client.CallToolAsync("run_code", new Dictionary<string, object?> { ["code"] = "x = 1" });
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        // The SDK sends notifications/cancelled for the request when its token is cancelled.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            await client.CallToolAsync("run_code", new Dictionary<string, object?> { ["code"] = "import time\ntime.sleep(120)\nx = 2" }, cancellationToken: cancel.Token));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var after = await client.CallToolAsync("run_code", new Dictionary<string, object?> { ["code"] = "x" });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the next call waited {clock.Elapsed.TotalSeconds:F0} s for the cancelled one");
        var text = string.Concat(after.Content.OfType<ModelContextProtocol.Protocol.TextContentBlock>().Select(c => c.Text));
        Assert.Contains("[result]\n1\n", text); // interrupted before x = 2
    }

    [Fact]
    public async Task With_the_sdk_client_the_fixed_tool_list_advertises_no_list_changes_and_a_protocol_error_is_one_log_line_without_a_stack()
    {
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var client = await SdkClient(stderr);
        Assert.NotNull(client.ServerCapabilities.Tools);
        Assert.Null(client.ServerCapabilities.Tools.ListChanged); // the tools never change: no tools/list_changed to wait for
        Assert.Equal(7, (await client.ListToolsAsync()).Count);

        var missing = await Assert.ThrowsAsync<ModelContextProtocol.McpProtocolException>(async () =>
            await client.CallToolAsync("run_code", new Dictionary<string, object?>()));
        Assert.Equal(ModelContextProtocol.McpErrorCode.InvalidParams, missing.ErrorCode);
        var unknown = await Assert.ThrowsAsync<ModelContextProtocol.McpProtocolException>(async () =>
            await client.CallToolAsync("no_such_tool", new Dictionary<string, object?>()));
        Assert.Equal(ModelContextProtocol.McpErrorCode.InvalidParams, unknown.ErrorCode);
        var ok = await client.CallToolAsync("run_code", new Dictionary<string, object?> { ["code"] = "6 * 7" });
        Assert.NotEqual(true, ok.IsError);

        await ServerFixture.WaitUntil(() => stderr.Count(l => l.Contains("no_such_tool")) > 0, "the unknown tool is logged", 10);
        await Task.Delay(300); // any further line of the same errors would follow at once
        var lines = stderr.ToArray();
        Assert.DoesNotContain(lines, l => l.Contains("   at ") || l.Contains(" at ModelContextProtocol.") || l.Contains("--- End of"));
        Assert.Single(lines, l => l.Contains("required parameter 'code'"));
        Assert.Single(lines, l => l.Contains("no_such_tool"));
        Assert.All(lines, l => Assert.True(l.Length < 600, $"one short line: {l}"));
    }

    [Fact]
    public async Task Run_code_keeps_state_between_calls_and_an_uncaught_exception_is_a_tool_error()
    {
        await using var mcp = McpProcess.Start(fx.Server.Address, output);
        await mcp.InitializeAsync();

        var set = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x = 41\nprint('set')" });
        Assert.False(set.IsError, set.ToString());
        Assert.Contains("[stdout]\nset", set.Text);
        var state = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x + 1" });
        Assert.False(state.IsError, state.ToString());
        Assert.Contains("[result]\n42\n", state.Text);
        Assert.EndsWith("[exit code 0]", state.Text);

        var raised = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "1/0" });
        Assert.True(raised.IsError, raised.ToString());
        Assert.Contains("ZeroDivisionError: division by zero", raised.Text);
        Assert.Contains("Traceback", raised.Text);
        Assert.EndsWith("[exit code 1]", raised.Text);
        var after = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x" });
        Assert.Contains("[result]\n41\n", after.Text); // the REPL survived the exception

        var shell = await mcp.CallToolAsync("exec", new JsonObject { ["command"] = "pwd; echo oops >&2; exit 3", ["cwd"] = "/tmp" });
        Assert.True(shell.IsError, shell.ToString());
        Assert.Contains("[stdout]\n/tmp\n", shell.Text);
        Assert.Contains("[stderr]\noops\n", shell.Text);
        Assert.EndsWith("[exit code 3]", shell.Text);
        var fine = await mcp.CallToolAsync("exec", new JsonObject { ["command"] = "echo $((6 * 7))" });
        Assert.False(fine.IsError, fine.ToString());
        Assert.Contains("[stdout]\n42\n", fine.Text);

        // A flood is cut to what a model can read, keeping its end (the exit code).
        var flood = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "for i in range(100000): print('line', i)" });
        Assert.True(flood.Text.Length < 110_000, $"{flood.Text.Length} characters came back");
        Assert.Contains("characters left out", flood.Text);
        Assert.EndsWith("[exit code 0]", flood.Text);
    }

    [Fact]
    public async Task A_cancelled_tool_call_interrupts_its_code_and_the_next_call_runs_at_once()
    {
        await using var mcp = McpProcess.Start(fx.Server.Address, output);
        await mcp.InitializeAsync();
        Assert.False((await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x = 1" })).IsError);

        var (id, _) = await mcp.SendRequestAsync("tools/call", new JsonObject
        {
            ["name"] = "run_code",
            ["arguments"] = new JsonObject { ["code"] = "import time\ntime.sleep(120)\nx = 2" },
        });
        // The session's sandbox exists (the first call made it), so the cell starts within
        // milliseconds; were it not started yet, cancelling would stop it before it ran.
        await Task.Delay(TimeSpan.FromSeconds(1));
        await mcp.NotifyAsync("notifications/cancelled", new JsonObject { ["requestId"] = id, ["reason"] = "the user pressed stop" });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var after = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x" });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the next call waited {clock.Elapsed.TotalSeconds:F0} s for the cancelled one");
        Assert.Contains("[result]\n1\n", after.Text); // interrupted before x = 2
    }

    [Fact]
    public async Task Files_go_in_as_text_or_base64_and_come_back_the_same_way()
    {
        await using var mcp = McpProcess.Start(fx.Server.Address, output);
        await mcp.InitializeAsync();
        const string text = "héllo\nworld";
        byte[] binary = [0, 1, 2, 255];

        Assert.False((await mcp.CallToolAsync("upload", new JsonObject { ["path"] = "notes/a.txt", ["content"] = text })).IsError);
        Assert.False((await mcp.CallToolAsync("upload", new JsonObject
        {
            ["path"] = "/root/blob.bin", ["content"] = Convert.ToBase64String(binary), ["base64"] = true,
        })).IsError);

        var listing = await mcp.CallToolAsync("list_files", new JsonObject { ["path"] = "/root/notes" });
        Assert.Contains($"a.txt  ({Encoding.UTF8.GetByteCount(text)} bytes)", listing.Text);
        Assert.Contains("notes/", (await mcp.CallToolAsync("list_files")).Text); // default: /root
        Assert.Equal(text, (await mcp.CallToolAsync("download", new JsonObject { ["path"] = "/root/notes/a.txt" })).Text);
        var blob = await mcp.CallToolAsync("download", new JsonObject { ["path"] = "blob.bin" });
        Assert.False(blob.IsError, blob.ToString());
        Assert.EndsWith("\n" + Convert.ToBase64String(binary), blob.Text);
        Assert.Contains("base64", blob.Text.Split('\n')[0]);
        var exact = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "open('/root/blob.bin', 'rb').read() == bytes([0, 1, 2, 255])" });
        Assert.Contains("[result]\ntrue\n", exact.Text);

        var missing = await mcp.CallToolAsync("download", new JsonObject { ["path"] = "/root/nothing-here" });
        Assert.True(missing.IsError, missing.ToString());
        Assert.Contains("file_not_found", missing.Text); // the server's error, as a tool result
        Assert.Contains("nothing-here", missing.Text);
    }

    [Fact]
    public async Task Malformed_arguments_are_protocol_errors_and_sandboxes_of_others_are_refused()
    {
        await using var other = await fx.NewSandbox();
        await using var mcp = McpProcess.Start(fx.Server.Address, output);
        await mcp.InitializeAsync();

        Assert.Equal(-32602, (await mcp.CallToolExpectingErrorAsync("run_code", new JsonObject()))["code"]!.GetValue<int>());
        Assert.Equal(-32602, (await mcp.CallToolExpectingErrorAsync("fork", new JsonObject { ["n"] = 9 }))["code"]!.GetValue<int>());
        Assert.Equal(-32602, (await mcp.CallToolExpectingErrorAsync("upload", new JsonObject
        {
            ["path"] = "x", ["content"] = "not base64!", ["base64"] = true,
        }))["code"]!.GetValue<int>());
        Assert.Equal(-32602, (await mcp.CallToolExpectingErrorAsync("no_such_tool", new JsonObject()))["code"]!.GetValue<int>());

        var foreign = await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "1", ["sandbox_id"] = other.Id });
        Assert.True(foreign.IsError, foreign.ToString());
        Assert.Contains("not created by this MCP session", foreign.Text);
        var closeForeign = await mcp.CallToolAsync("close_sandbox", new JsonObject { ["sandbox_id"] = other.Id });
        Assert.True(closeForeign.IsError, closeForeign.ToString());
        Assert.Equal(HttpStatusCode.OK, await Status(other.Id)); // left alone

        await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "1" });
        var main = (await SandboxIdsOf(mcp)).Main;
        var closeMain = await mcp.CallToolAsync("close_sandbox", new JsonObject { ["sandbox_id"] = main });
        Assert.True(closeMain.IsError, closeMain.ToString());
        Assert.Contains("main sandbox", closeMain.Text);
        Assert.Equal(HttpStatusCode.OK, await Status(main));
    }

    [Fact]
    public async Task Forks_are_used_by_id_and_closing_stdin_ends_the_process_and_closes_every_sandbox_of_the_session()
    {
        var before = await SandboxIds();
        await using var mcp = McpProcess.Start(fx.Server.Address, output);
        await mcp.InitializeAsync();
        await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x = 41" });

        var (main, children) = await SandboxIdsOf(mcp, n: 2);
        Assert.Equal(2, children.Distinct().Count());
        Assert.DoesNotContain(main, children);
        var (a, b) = (children[0], children[1]);

        // Each call goes to the sandbox it names: a fork starts from the main sandbox's state, then lives its own life.
        Assert.Contains("[result]\n42\n", (await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x + 1", ["sandbox_id"] = a })).Text);
        await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x = 100", ["sandbox_id"] = a });
        Assert.Contains("[result]\n101\n", (await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x + 1", ["sandbox_id"] = a })).Text);
        Assert.Contains("[result]\n42\n", (await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x + 1" })).Text);
        Assert.Contains("[result]\n42\n", (await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "x + 1", ["sandbox_id"] = main })).Text);

        var closed = await mcp.CallToolAsync("close_sandbox", new JsonObject { ["sandbox_id"] = b });
        Assert.False(closed.IsError, closed.ToString());
        Assert.Equal(HttpStatusCode.NotFound, await Status(b));
        Assert.True((await mcp.CallToolAsync("run_code", new JsonObject { ["code"] = "1", ["sandbox_id"] = b })).IsError);
        Assert.Equal(HttpStatusCode.OK, await Status(main));
        Assert.Equal(HttpStatusCode.OK, await Status(a));

        Assert.Equal(0, await mcp.CloseInputAndWaitAsync(ExitTimeout));
        Assert.Equal(HttpStatusCode.NotFound, await Status(main));
        Assert.Equal(HttpStatusCode.NotFound, await Status(a));
        Assert.Equal(before.Order(), (await SandboxIds()).Order()); // nothing the session made is left
        Assert.Empty(mcp.NonProtocolLines);
    }

    /// <summary>Forks the session's main sandbox; the fork tool's reply names it and then the forks.</summary>
    private static async Task<(string Main, string[] Children)> SandboxIdsOf(McpProcess mcp, int n = 1)
    {
        var fork = await mcp.CallToolAsync("fork", new JsonObject { ["n"] = n });
        Assert.False(fork.IsError, fork.ToString());
        var ids = SandboxId().Matches(fork.Text).Select(m => m.Value).ToArray();
        Assert.Equal(n + 1, ids.Length);
        return (ids[0], ids[1..]);
    }

    private async Task<HttpStatusCode> Status(string id)
    {
        using var resp = await fx.Http.GetAsync($"v1/sandboxes/{id}");
        return resp.StatusCode;
    }

    private async Task<HashSet<string>> SandboxIds() =>
        (await fx.Client.ListSandboxesAsync()).Sandboxes.Select(s => s.Id).ToHashSet();

    [GeneratedRegex("sbx_[0-9a-f]{32}")]
    private static partial Regex SandboxId();
}
