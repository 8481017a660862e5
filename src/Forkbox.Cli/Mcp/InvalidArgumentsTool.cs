using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Forkbox.Cli.Mcp;

/// <summary>
/// Makes arguments that cannot be bound to a tool's parameters (a required one missing, a wrong
/// type) a JSON-RPC "invalid params" error. Left alone, the SDK would turn them into a tool result
/// that only says an error occurred. The tools themselves catch every other failure, so what
/// reaches this wrapper as an argument or JSON error comes from binding.
/// </summary>
internal sealed class InvalidArgumentsTool(McpServerTool inner) : DelegatingMcpServerTool(inner)
{
    public override async ValueTask<CallToolResult> InvokeAsync(RequestContext<CallToolRequestParams> request, CancellationToken cancellationToken = default)
    {
        try
        {
            return await base.InvokeAsync(request, cancellationToken);
        }
        catch (Exception e) when (e is ArgumentException or JsonException)
        {
            throw new McpProtocolException($"invalid arguments for {ProtocolTool.Name}: {e.Message}", e, McpErrorCode.InvalidParams);
        }
    }
}
