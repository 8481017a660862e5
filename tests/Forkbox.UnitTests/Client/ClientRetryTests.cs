using System.Net;
using System.Net.Sockets;
using Forkbox.Client;

namespace Forkbox.UnitTests.Client;

/// <summary>
/// The C# SDK retries only where it is safe, against real sockets: a listener that takes each
/// connection and closes it without answering, and a port where nothing listens.
/// </summary>
[Trait("Root", "not needed")]
public sealed class ClientRetryTests
{
    [Fact]
    public async Task A_get_whose_connection_drops_is_retried_and_an_exec_is_not()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var connections = 0;
        using var stop = new CancellationTokenSource();
        // Ends only by throwing, once stopped: a loop that checked the token between connections
        // could also end without, and the last assertion would then fail on a race.
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                using var c = await listener.AcceptTcpClientAsync(stop.Token);
                Interlocked.Increment(ref connections);
                var buffer = new byte[4096];
                _ = await c.GetStream().ReadAsync(buffer, stop.Token); // the request arrived, then nothing
            }
        });
        var client = new ForkboxClient($"127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}");

        await Assert.ThrowsAsync<HttpRequestException>(() => Sandbox.ConnectAsync("sbx_00000000000000000000000000000000", client));
        Assert.True(Volatile.Read(ref connections) > 1, "a GET whose connection dropped was not retried");

        Interlocked.Exchange(ref connections, 0);
        await Assert.ThrowsAsync<HttpRequestException>(() => Sandbox.CreateAsync(client: client));
        Assert.Equal(1, Volatile.Read(ref connections)); // POST whose bytes went out: never again
        stop.Cancel();
        listener.Stop();
        await Assert.ThrowsAnyAsync<Exception>(() => accepting);
    }

    [Fact]
    public async Task A_create_whose_connection_was_refused_is_retried_before_it_fails()
    {
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((IPEndPoint)l.LocalEndpoint).Port;
        }
        var client = new ForkboxClient($"127.0.0.1:{port}");
        var started = DateTime.UtcNow;
        var e = await Assert.ThrowsAsync<HttpRequestException>(() => Sandbox.CreateAsync(client: client));
        Assert.Equal(HttpRequestError.ConnectionError, e.HttpRequestError);
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(450), "no retry after 100 and 400 ms");
    }

    [Theory]
    [InlineData(400, typeof(ForkboxBadRequestException))]
    [InlineData(401, typeof(ForkboxUnauthorizedException))]
    [InlineData(404, typeof(ForkboxNotFoundException))]
    [InlineData(409, typeof(ForkboxConflictException))]
    [InlineData(413, typeof(ForkboxPayloadTooLargeException))]
    [InlineData(429, typeof(ForkboxRateLimitedException))]
    [InlineData(500, typeof(ForkboxExecutorException))]
    [InlineData(503, typeof(ForkboxAtCapacityException))]
    [InlineData(507, typeof(ForkboxInsufficientStorageException))]
    [InlineData(418, typeof(ForkboxApiException))]
    public void Each_status_has_its_exception(int status, Type type)
    {
        var e = ForkboxApiException.From(status, "code", "message", TimeSpan.FromSeconds(3));
        Assert.IsType(type, e);
        Assert.Equal(status, e.Status);
        Assert.Equal("code", e.Code);
        if (e is ForkboxRateLimitedException r) Assert.Equal(TimeSpan.FromSeconds(3), r.RetryAfter);
    }
}
