using System.CommandLine;
using System.Reflection;
using System.Runtime.InteropServices;
using Forkbox.Cli.Mcp;
using Forkbox.Client;
using Forkbox.Core.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Forkbox.Cli;

/// <summary>
/// `forkbox mcp`: a Model Context Protocol server on stdin/stdout, so desktop agents and IDEs can
/// use a Forkbox sandbox. One process is one session: its sandbox is created at the first tool call
/// and closed, with every fork the session made, when stdin closes or the process is stopped.
/// </summary>
internal static class McpCommand
{
    private static readonly TimeSpan GraceAfterEndOfInput = TimeSpan.FromSeconds(3);

    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();
        var template = new Option<string?>("--template") { Description = "Template of the session's sandbox (default: default)" };
        var timeout = new Option<double>("--timeout")
        {
            Description = "Lifetime of the session's sandbox in seconds, at most the server's MaxTimeoutS (default 3600: " +
                          "a conversation outlasts the server's 300 s default)",
            DefaultValueFactory = _ => 3600,
        };
        var cmd = new Command("mcp",
            "Serve the Model Context Protocol on stdin/stdout for a desktop agent or IDE: tools to run Python and shell " +
            "commands, move files and fork, in a sandbox made at the first call and closed when stdin closes. Logs go to stderr.")
        {
            host, apiKey, template, timeout,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var client = new ForkboxClient(parse.GetValue(host), parse.GetValue(apiKey));
            var create = new CreateSandboxRequest { Template = parse.GetValue(template), TimeoutS = parse.GetValue(timeout) };
            await ServeAsync(client, create, ct);
            return 0;
        });
        return cmd;
    }

    private static async Task ServeAsync(ForkboxClient client, CreateSandboxRequest create, CancellationToken ct)
    {
        // stdout carries the protocol and nothing else: the transport writes to the raw stdout stream,
        // so anything that writes to Console.Out by mistake lands on stderr instead of corrupting it.
        Console.SetOut(Console.Error);
        using var logs = LoggerFactory.Create(b => b
            .AddConsole(o =>
            {
                o.LogToStandardErrorThreshold = LogLevel.Trace;
                o.FormatterName = McpLogFormatter.Name;
            })
            .AddConsoleFormatter<McpLogFormatter, ConsoleFormatterOptions>()
            .SetMinimumLevel(LogLevel.Warning)
            .AddFilter("Forkbox", LogLevel.Information));

        await using var session = new SandboxSession(client, create, logs.CreateLogger<SandboxSession>());
        var tools = new SandboxTools(session, client, logs.CreateLogger<SandboxTools>());
        var options = new McpServerOptions
        {
            ServerInfo = new Implementation { Name = "forkbox", Title = "Forkbox sandbox", Version = Version() },
            ServerInstructions =
                "Tools to run Python (a persistent REPL: variables survive between calls) and shell commands in an isolated " +
                "Linux sandbox, move files in and out, and fork the sandbox to try alternatives from the same state. The " +
                "sandbox is created at the first tool call and destroyed when this session ends; forks are addressed by the " +
                "sandbox_id the fork tool returns.",
        };
        // The tool list is fixed for the life of the process, so the tools are served by list and call
        // handlers rather than a ToolCollection: the SDK advertises "listChanged" for any collection,
        // which tells a client to wait for tools/list_changed notifications that never come.
        var byName = new Dictionary<string, McpServerTool>(StringComparer.Ordinal);
        foreach (var method in typeof(SandboxTools).GetMethods(BindingFlags.Public | BindingFlags.Instance))
            if (method.GetCustomAttribute<McpServerToolAttribute>() is not null)
            {
                var tool = new InvalidArgumentsTool(McpServerTool.Create(method, tools));
                byName[tool.ProtocolTool.Name] = tool;
            }
        var listed = new ListToolsResult { Tools = [.. byName.Values.Select(t => t.ProtocolTool)] };
        options.Handlers.ListToolsHandler = (_, _) => ValueTask.FromResult(listed);
        options.Handlers.CallToolHandler = (request, cancel) =>
            request.Params?.Name is { } name && byName.TryGetValue(name, out var tool)
                ? tool.InvokeAsync(request, cancel)
                : throw new McpProtocolException($"Unknown tool: '{request.Params?.Name}'", McpErrorCode.InvalidParams);

        // A client that stops its server with a signal rather than by closing stdin ends the session
        // too: without these, SIGTERM would kill the process and leave its sandboxes running.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var onHup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
        void Stop(PosixSignalContext signal)
        {
            signal.Cancel = true;
            stop.Cancel();
        }

        await using var transport = new StdioServerTransport(options, logs);
        await using var server = McpServer.Create(transport, options, logs);
        // At the end of input the SDK waits for the calls in flight, which could be a cell running for
        // minutes, while the client (gone, or about to send SIGTERM and then SIGKILL, which would leak
        // the sandboxes) reads no more answers. Calls that end soon are still answered.
        _ = transport.MessageReader.Completion.ContinueWith(_ =>
        {
            try
            {
                stop.CancelAfter(GraceAfterEndOfInput);
            }
            catch (ObjectDisposedException)
            {
                // The session ended first.
            }
        }, TaskScheduler.Default);
        try
        {
            await server.RunAsync(stop.Token); // returns when stdin closes and the calls in flight are done
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        // `await using session` closes the session's sandboxes here, before the process exits.
    }

    private static string Version() =>
        typeof(McpCommand).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
}
