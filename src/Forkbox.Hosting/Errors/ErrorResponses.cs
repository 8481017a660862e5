using System.Text.Json;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Forkbox.Hosting.Errors;

/// <summary>The one place API errors become HTTP responses: {"error": "…", "code": "…"} with the error's status.</summary>
public static partial class ErrorResponses
{
    public static Task WriteAsync(HttpContext ctx, int status, string code, string message)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        var body = JsonSerializer.SerializeToUtf8Bytes(new ErrorBody(message, code), WireJson.Default.ErrorBody);
        ctx.Response.ContentLength = body.Length;
        return ctx.Response.Body.WriteAsync(body).AsTask();
    }

    /// <summary>Middleware: turns exceptions from the endpoints into error bodies.</summary>
    public static async Task Handle(HttpContext ctx, RequestDelegate next)
    {
        try
        {
            await next(ctx).ConfigureAwait(false);
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            var (status, code, message) = e switch
            {
                ForkboxException f => (f.Status, f.Code, f.Message),
                BadHttpRequestException b => (b.StatusCode, b.StatusCode == 413 ? "too_large" : "bad_request", b.Message),
                JsonException j => (400, "bad_request", "request body is not valid JSON for this call: " + j.Message),
                OperationCanceledException when ctx.RequestAborted.IsCancellationRequested => (499, "client_closed", "client closed the request"),
                _ => (500, "executor_error", "internal error: " + e.Message),
            };
            // A failure of ours gets its stack; a host full or a sandbox's disk full (503, 507) is a
            // condition to watch, not a bug: one line.
            if (status >= 500)
            {
                var log = ctx.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Forkbox.Api");
                if (status == 500 || e is not ForkboxException) LogServerError(log, ctx.Request.Method, ctx.Request.Path, e);
                else LogServerCondition(log, ctx.Request.Method, ctx.Request.Path, status, message);
            }
            if (e is RateLimitedException { RetryAfterS: { } wait })
                ctx.Response.Headers.RetryAfter = wait.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await WriteAsync(ctx, status, code, message).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 1101, Level = LogLevel.Error, Message = "{Method} {Path} failed")]
    private static partial void LogServerError(ILogger log, string method, string path, Exception e);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Warning, Message = "{Method} {Path}: {Status} {Message}")]
    private static partial void LogServerCondition(ILogger log, string method, string path, int status, string message);
}
