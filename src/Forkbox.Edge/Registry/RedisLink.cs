using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Forkbox.Hosting.Cluster;
using StackExchange.Redis;

namespace Forkbox.Edge.Registry;

/// <summary>
/// Whether the edge reaches its Redis, told in one short line per change of state. StackExchange.Redis's
/// exceptions carry a kilobyte of connection diagnostics each; logged as they came, every failed
/// round of the registry and the tier reconciler wrote one. Here a failure is named by its kind and
/// the socket's own error ("UnableToConnect: Connection refused"), once, until Redis answers again.
/// </summary>
public sealed partial class RedisLink
{
    private const int Unknown = -1, Up = 0, Down = 1;
    private readonly string _endpoint;
    private readonly ILogger _log;
    private ConnectionMultiplexer _redis = null!;
    private int _state = Unknown;
    private volatile string? _lastFailure;

    private RedisLink(string endpoint, ILogger log)
    {
        _endpoint = endpoint;
        _log = log;
    }

    /// <summary>Connects (see <see cref="ClusterRedis.ConnectAsync"/>: a Redis that does not answer yet is retried in the background), watching every attempt.</summary>
    public static async Task<RedisLink> ConnectAsync(string endpoint, ILogger log)
    {
        var link = new RedisLink(endpoint, log);
        // Watched from before the first attempt, so that a Redis down at start-up is named too.
        link._redis = await ClusterRedis.ConnectAsync(endpoint, c => c.ConnectionAttemptCompleted += (_, e) =>
        {
            if (!e.IsSuccess) link._lastFailure = Describe(e.FailureType, e.Exception);
        }).ConfigureAwait(false);
        return link;
    }

    public ConnectionMultiplexer Redis => _redis;

    /// <summary>Whether the connection is up now; while it is not, a command would only wait out its timeout in the backlog.</summary>
    public bool IsConnected => _redis.IsConnected;

    /// <summary>Why Redis cannot be used, in a few words: from <paramref name="error"/>, else from the connection's last failure.</summary>
    public string Reason(Exception? error = null) => error switch
    {
        RedisConnectionException c => Describe(c.FailureType, c),
        null or RedisTimeoutException when _lastFailure is { } last => last,
        null => "not connected",
        _ => FirstClause(error.Message),
    };

    /// <summary>A round worked: logs "answers again" if it was down.</summary>
    public void Succeeded(string doing)
    {
        if (Interlocked.Exchange(ref _state, Up) == Down) LogUp(_log, _endpoint, doing);
    }

    /// <summary>A round failed (or was skipped while not connected): logs once per outage what the edge does meanwhile.</summary>
    public void Failed(Exception? error, string doing)
    {
        if (Interlocked.Exchange(ref _state, Down) != Down) LogDown(_log, _endpoint, Reason(error), doing);
    }

    /// <summary>Marks Redis down without a line of its own, for a caller that says it in its own (the start-up line).</summary>
    public void FailedQuietly() => Interlocked.Exchange(ref _state, Down);

    private static string Describe(ConnectionFailureType type, Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
            if (e is SocketException s) return $"{type}: {s.Message}";
        return type.ToString();
    }

    /// <summary>The message up to its diagnostics (StackExchange.Redis appends them after " - " or in parentheses).</summary>
    private static string FirstClause(string message)
    {
        var end = message.Length;
        foreach (var mark in new[] { " - ", " (", "; " })
            if (message.IndexOf(mark, StringComparison.Ordinal) is > 0 and var i && i < end) end = i;
        return end > 160 ? message[..160] + "…" : message[..end];
    }

    [LoggerMessage(EventId = 5401, Level = LogLevel.Warning, Message = "redis {Redis} unreachable ({Reason}): {Doing}")]
    private static partial void LogDown(ILogger log, string redis, string reason, string doing);

    [LoggerMessage(EventId = 5402, Level = LogLevel.Information, Message = "redis {Redis} answers again: {Doing}")]
    private static partial void LogUp(ILogger log, string redis, string doing);
}
