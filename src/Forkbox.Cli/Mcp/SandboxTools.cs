using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using Forkbox.Client;
using Forkbox.Core.Wire;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Forkbox.Cli.Mcp;

/// <summary>
/// The tools `forkbox mcp` serves. Each works on the session's main sandbox, or on one of its forks
/// named by sandbox_id. API errors come back as tool results with isError and the server's
/// message, so the model can read them and act; malformed arguments are protocol errors.
/// </summary>
/// <remarks>Parameter names are snake_case because they are the names on the wire, in the tools' input schemas.</remarks>
internal sealed partial class SandboxTools(SandboxSession session, ForkboxClient client, ILogger<SandboxTools> log)
{
    private const string SandboxIdDescription =
        "Optional: the id of a fork made by the fork tool to work in that fork. Leave it out to use this session's main sandbox.";

    [McpServerTool(Name = "run_code", Title = "Run Python", OpenWorld = false)]
    [Description("Run Python code in the sandbox's persistent REPL, like a notebook cell: variables, imports and files persist " +
                 "between calls, so build on earlier results rather than recomputing them. The value of a last expression is " +
                 "returned as [result]. Returns [stdout], [stderr], [result], [error] (an uncaught exception with its traceback) " +
                 "and the exit code; isError is set for an uncaught exception or a nonzero exit. The sandbox is an isolated Linux " +
                 "machine with Python 3 (standard library), working directory /root.")]
    public Task<CallToolResult> RunCode(
        [Description("Python source to run. The value of its last line, when that is an expression, is returned as the result.")] string code,
        [Description("Optional: seconds before the code is interrupted with TimeoutError (its variables survive). Default 300.")] double? timeout_s = null,
        [Description(SandboxIdDescription)] string? sandbox_id = null,
        CancellationToken ct = default) => Call(async () =>
    {
        var sb = await session.ResolveAsync(sandbox_id, ct);
        var run = await sb.RunAsync(new ExecRequest { Code = code, Language = "python", TimeoutS = timeout_s, Rich = true }, ct: ct);
        return ToolResults.Execution(run, "python");
    });

    [McpServerTool(Name = "exec", Title = "Run a shell command", OpenWorld = false)]
    [Description("Run a shell command with `bash -c` in a fresh process in the sandbox (Debian-like Linux, user root, default directory /root). " +
                 "Returns [stdout], [stderr] and the exit code; isError is set for a nonzero exit. Processes left in the background " +
                 "keep running but their later output is not collected: redirect it to a file.")]
    public Task<CallToolResult> Exec(
        [Description("The command line, run by bash -c; pipes, redirections and && work.")] string command,
        [Description("Optional: directory to run in (a path in the sandbox). Default /root.")] string? cwd = null,
        [Description("Optional: seconds before the command's processes are killed (exit code 124). Default 300.")] double? timeout_s = null,
        [Description(SandboxIdDescription)] string? sandbox_id = null,
        CancellationToken ct = default) => Call(async () =>
    {
        var sb = await session.ResolveAsync(sandbox_id, ct);
        var run = await sb.RunAsync(new ExecRequest { Code = command, Language = "bash", TimeoutS = timeout_s, Cwd = cwd }, ct: ct);
        return ToolResults.Execution(run, "bash");
    });

    [McpServerTool(Name = "upload", Title = "Write a file", OpenWorld = false)]
    [Description("Write a file in the sandbox; parent directories are created and an existing file is replaced. " +
                 "Pass text as content, or binary data as base64 in content with base64 set to true.")]
    public Task<CallToolResult> Upload(
        [Description("Path of the file in the sandbox; a relative path starts at /root.")] string path,
        [Description("The file's content: text (written as UTF-8), or base64 when base64 is true.")] string content,
        [Description("Optional: true when content is base64-encoded bytes. Default false.")] bool base64 = false,
        [Description(SandboxIdDescription)] string? sandbox_id = null,
        CancellationToken ct = default)
    {
        byte[] bytes;
        try
        {
            bytes = base64 ? Convert.FromBase64String(content) : System.Text.Encoding.UTF8.GetBytes(content);
        }
        catch (FormatException)
        {
            throw new McpProtocolException("upload: content is not valid base64 (base64 is true)", McpErrorCode.InvalidParams);
        }
        return Call(async () =>
        {
            var sb = await session.ResolveAsync(sandbox_id, ct);
            await sb.UploadAsync(path, bytes, ct);
            return ToolResults.Text($"wrote {bytes.Length} bytes to {path}");
        });
    }

    [McpServerTool(Name = "download", Title = "Read a file", ReadOnly = true, OpenWorld = false)]
    [Description("Read a file from the sandbox. Returns its content as text when it is UTF-8 text; otherwise a first line " +
                 "saying it is binary, then its bytes as base64.")]
    public Task<CallToolResult> Download(
        [Description("Path of the file in the sandbox; a relative path starts at /root.")] string path,
        [Description(SandboxIdDescription)] string? sandbox_id = null,
        CancellationToken ct = default) => Call(async () =>
    {
        var sb = await session.ResolveAsync(sandbox_id, ct);
        return ToolResults.File(path, await sb.DownloadAsync(path, ct));
    });

    [McpServerTool(Name = "list_files", Title = "List a directory", ReadOnly = true, OpenWorld = false)]
    [Description("List a directory in the sandbox, one entry a line: directories end with /, files show their size in bytes.")]
    public Task<CallToolResult> ListFiles(
        [Description("Optional: the directory to list. Default /root.")] string? path = null,
        [Description(SandboxIdDescription)] string? sandbox_id = null,
        CancellationToken ct = default) => Call(async () =>
    {
        var sb = await session.ResolveAsync(sandbox_id, ct);
        var dir = string.IsNullOrEmpty(path) ? "/root" : path;
        return ToolResults.Listing(dir, await sb.ListAsync(dir, ct));
    });

    [McpServerTool(Name = "fork", Title = "Fork the sandbox", OpenWorld = false)]
    [Description("Copy the sandbox n ways (1 to 8) in milliseconds: each fork starts with the same variables, imports and files, " +
                 "then runs on its own. Use it to try alternatives from one state. Returns the forks' ids, one a line: pass one " +
                 "as sandbox_id to the other tools to work in that fork. Forks are closed by close_sandbox or when the session ends.")]
    public Task<CallToolResult> Fork(
        [Description("How many forks to make, 1 to 8. Default 1."), Range(1, 8)] int n = 1,
        [Description("Optional: the sandbox to fork (a fork's id, to fork a fork). Default: this session's main sandbox.")] string? sandbox_id = null,
        CancellationToken ct = default)
    {
        if (n is < 1 or > 8) throw new McpProtocolException($"fork: n must be between 1 and 8, not {n}", McpErrorCode.InvalidParams);
        return Call(async () =>
        {
            var parent = await session.ResolveAsync(sandbox_id, ct);
            var forks = await parent.ForkAsync(n, ct);
            await session.AddForksAsync(forks);
            var what = forks.Count == 1 ? "1 fork" : $"{forks.Count} forks";
            return ToolResults.Text($"{what} of {parent.Id}, each a copy of its variables, imports and files (pass one as sandbox_id):\n" +
                                    string.Join('\n', forks.Select(f => f.Id)));
        });
    }

    [McpServerTool(Name = "close_sandbox", Title = "Close a fork", Destructive = true, OpenWorld = false)]
    [Description("Close (destroy) a fork made by the fork tool, freeing its memory; its id stops working. " +
                 "The session's main sandbox cannot be closed this way: it is closed when the session ends.")]
    public Task<CallToolResult> CloseSandbox(
        [Description("The id of the fork to close, as returned by the fork tool.")] string sandbox_id,
        CancellationToken ct = default) => Call(async () =>
    {
        await session.CloseForkAsync(sandbox_id, ct);
        return ToolResults.Text($"closed {sandbox_id}");
    });

    /// <summary>Runs a tool's body; what went wrong on the way to the sandbox becomes a tool error the model can read.</summary>
    private async Task<CallToolResult> Call(Func<Task<CallToolResult>> body)
    {
        try
        {
            return await body();
        }
        catch (ForkboxApiException e)
        {
            return ToolResults.Error($"{e.ServerMessage} ({e.Code}, HTTP {e.Status})");
        }
        catch (SessionSandboxException e)
        {
            return ToolResults.Error(e.Message);
        }
        catch (HttpRequestException e)
        {
            return ToolResults.Error($"cannot reach the Forkbox server at {client.BaseAddress}: {e.Message}");
        }
        catch (Exception e) when (e is not (OperationCanceledException or McpException))
        {
            // Not the arguments' fault: keep it a tool error so it is not mistaken for a binding error.
            LogUnexpected(e);
            return ToolResults.Error($"forkbox mcp failed: {e.GetType().Name}: {e.Message}");
        }
    }

    [LoggerMessage(EventId = 6101, Level = LogLevel.Error, Message = "a tool call failed unexpectedly")]
    private partial void LogUnexpected(Exception e);
}
