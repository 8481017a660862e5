using System.Net;
using System.Net.Sockets;
using Forkbox.Core;
using Forkbox.Host.Api;
using Forkbox.Linux.Network;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;
using Forkbox.Hosting.Errors;

namespace Forkbox.Host.Ports;

/// <summary>
/// Forwards a request (HTTP or a WebSocket upgrade) to a port a sandbox listens on, with YARP's
/// IHttpForwarder. The connection is made from inside the sandbox's network namespace (see
/// <see cref="NetnsSocketFactory"/>) to 127.0.0.1:port there, so this works in every network mode
/// and the sandbox needs no address the host can route to. Each sandbox is its own destination host
/// ("HEX.sandbox"), so pooled connections are never shared between sandboxes.
/// </summary>
public sealed class PortForwarder : IDisposable
{
    private const string HostSuffix = ".sandbox";
    private static readonly ForwarderRequestConfig RequestConfig = new()
    {
        ActivityTimeout = TimeSpan.FromMinutes(10),
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
    };

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _client;

    /// <param name="pidOf">The host pid of a live sandbox's PID 1, by id; null when there is none.</param>
    public PortForwarder(IHttpForwarder forwarder, NetnsSocketFactory sockets, Func<string, int?> pidOf)
    {
        _forwarder = forwarder;
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            ConnectTimeout = TimeSpan.FromSeconds(5),
            ConnectCallback = async (ctx, ct) =>
            {
                var host = ctx.DnsEndPoint.Host;
                var id = SandboxId.Prefix + host[..^HostSuffix.Length];
                var pid = pidOf(id) ?? throw new HttpRequestException($"sandbox '{id}' is not running");
                var socket = await sockets.CreateAsync(pid).ConfigureAwait(false);
                try
                {
                    await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, ctx.DnsEndPoint.Port), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        });
    }

    /// <summary>Forwards the request to <paramref name="port"/> of sandbox <paramref name="id"/>, with <paramref name="rest"/> as its path.</summary>
    public async Task ForwardAsync(HttpContext ctx, string id, int port, string rest)
    {
        var prefix = $"http://{id[SandboxId.Prefix.Length..]}{HostSuffix}:{port}";
        var error = await _forwarder.SendAsync(ctx, prefix, _client, RequestConfig, new PortTransformer(rest, port)).ConfigureAwait(false);
        if (error != ForwarderError.None && !ctx.Response.HasStarted)
        {
            var inner = ctx.GetForwarderErrorFeature()?.Exception;
            var why = inner is HttpRequestException { InnerException: SocketException s } ? s.Message : inner?.Message ?? error.ToString();
            await ErrorResponses.WriteAsync(ctx, StatusCodes.Status502BadGateway, "port_unreachable",
                $"nothing answered on port {port} in sandbox '{id}' ({why}); start a server there that listens on 0.0.0.0 or 127.0.0.1").ConfigureAwait(false);
        }
    }

    public void Dispose() => _client.Dispose();

    /// <summary>Sends the path after the port (and token), drops the caller's credentials, and names the sandbox's own host.</summary>
    private sealed class PortTransformer(string rest, int port) : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
            CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
            proxyRequest.RequestUri = new Uri(destinationPrefix + new PathString(rest).ToUriComponent() + httpContext.Request.QueryString.ToUriComponent());
            // The API key is for forkbox, not for whatever the sandbox runs.
            proxyRequest.Headers.Remove("Authorization");
            proxyRequest.Headers.Remove("X-API-Key");
            proxyRequest.Headers.Host = $"localhost:{port}";
        }
    }
}
