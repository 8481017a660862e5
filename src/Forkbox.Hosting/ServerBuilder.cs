using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Forkbox.Hosting;

/// <summary>How `forkbox serve` and `forkbox edge` build their app, log, and answer JSON.</summary>
public static class ServerBuilder
{
    /// <summary>One line per event with a timestamp: how both log unless a caller (a test) says otherwise.</summary>
    public static void ConsoleLogging(ILoggingBuilder logging) => logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
    });

    /// <summary>A slim ASP.NET Core app whose logging is <paramref name="logging"/> with the framework's chatter at warnings only.</summary>
    public static WebApplicationBuilder Create(Action<ILoggingBuilder> logging)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging(builder.Logging);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning); // the ports proxy and the edge: one line per request otherwise
        return builder;
    }

    /// <summary>
    /// A JSON answer with its length: sent in one write, where a chunked one ends with a separate
    /// terminating chunk the client (or an edge in front) must wait for.
    /// </summary>
    public static IResult Json<T>(T value, JsonTypeInfo<T> type) =>
        Results.Bytes(JsonSerializer.SerializeToUtf8Bytes(value, type), "application/json; charset=utf-8");
}
