using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Forkbox.IntegrationTests;

/// <summary>
/// A logging provider that keeps the warnings and errors a server writes, for a test that checks
/// what the operator is told; the console gets them too, as with <see cref="ServerFixture.LogToConsole"/>.
/// </summary>
public sealed class CapturedLog : ILoggerProvider, ILogger
{
    private readonly ConcurrentQueue<string> _lines = new();

    /// <summary>Every line kept so far, as "Level: message".</summary>
    public IReadOnlyCollection<string> Lines => _lines;

    /// <summary>Pass to HostServer.StartAsync or EdgeServer.StartAsync.</summary>
    public void Configure(ILoggingBuilder logging)
    {
        ServerFixture.LogToConsole(logging);
        logging.AddProvider(this);
    }

    public ILogger CreateLogger(string categoryName) => this;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel)) _lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public void Dispose()
    {
    }
}
