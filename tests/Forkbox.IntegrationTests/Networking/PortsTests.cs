using System.Net;
using System.Net.WebSockets;
using System.Text;
using Forkbox.Client;
using Forkbox.Hosting.Auth;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>The ports proxy: a server in a sandbox without network, reached through the API.</summary>
[Collection(NetworkCollection.Name)]
public sealed class PortsTests(NetworkFixture fx)
{
    // A WebSocket echo server in the standard library: the handshake and unfragmented frames.
    private const string EchoServer = """
        import base64, hashlib, socket, struct, threading
        GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        def handle(c):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            headers = {}
            for line in data.split(b"\r\n")[1:]:
                if b":" in line:
                    k, v = line.split(b":", 1)
                    headers[k.strip().lower()] = v.strip()
            accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            f = c.makefile("rb")
            while True:
                h = f.read(2)
                if len(h) < 2:
                    return
                op, n = h[0] & 0x0F, h[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", f.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", f.read(8))[0]
                mask = f.read(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
                if op == 8:
                    c.sendall(b"\x88\x00")
                    return
                c.sendall(bytes([0x80 | op]) + (bytes([n]) if n < 126 else struct.pack(">BH", 126, n)) + payload)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 8765))
        s.listen()
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()
        """;

    private static async Task<Sandbox> WithHttpServerAsync(NetworkFixture fx)
    {
        var sb = await fx.NewSandbox();
        await sb.UploadAsync("/tmp/www/hello.txt", Encoding.UTF8.GetBytes("hello from the sandbox"));
        await sb.ExecAsync("(setsid nohup /usr/bin/python3 -m http.server 8000 --directory /tmp/www >/dev/null 2>&1 &)");
        await ServerFixture.WaitUntil(() => NetworkFixture.ProbeAsync(sb, "127.0.0.1", 8000).Result == "open", "http.server in the sandbox");
        return sb;
    }

    [Fact]
    public async Task An_http_server_in_a_sandbox_without_network_is_reachable_through_the_ports_proxy()
    {
        await using var sb = await WithHttpServerAsync(fx);
        var reply = await fx.Http.GetAsync(sb.PortUri(8000, "hello.txt"));
        Assert.Equal(HttpStatusCode.OK, reply.StatusCode);
        Assert.Equal("hello from the sandbox", await reply.Content.ReadAsStringAsync());
        Assert.Null(sb.Info.Address);
    }

    [Fact]
    public async Task The_ports_proxy_needs_the_API_key()
    {
        await using var sb = await WithHttpServerAsync(fx);
        var reply = await fx.Anonymous.GetAsync($"/v1/sandboxes/{sb.Id}/ports/8000/hello.txt");
        Assert.Equal(HttpStatusCode.Unauthorized, reply.StatusCode);
    }

    [Fact]
    public async Task A_signed_url_works_without_a_key_for_its_sandbox_and_port_only_until_it_expires()
    {
        await using var sb = await WithHttpServerAsync(fx);
        var signed = await sb.SignPortUrlAsync(8000, expiresInS: 2);
        var path = new Uri(signed.Url).AbsolutePath;
        Assert.StartsWith($"/v1/sandboxes/{sb.Id}/ports/8000/", path);

        Assert.Equal("hello from the sandbox", await fx.Anonymous.GetStringAsync(path + "hello.txt"));
        var otherPort = await fx.Anonymous.GetAsync(path.Replace("/ports/8000/", "/ports/8001/") + "hello.txt");
        Assert.Equal(HttpStatusCode.Unauthorized, otherPort.StatusCode);
        var tampered = await fx.Anonymous.GetAsync(path.Replace("/_fbx/", "/_fbx/1") + "hello.txt");
        Assert.Equal(HttpStatusCode.Unauthorized, tampered.StatusCode);

        await ServerFixture.WaitUntil(() => DateTimeOffset.UtcNow > signed.ExpiresAt.AddSeconds(1), "the URL's expiry", 5);
        var expired = await fx.Anonymous.GetAsync(path + "hello.txt");
        Assert.Equal(HttpStatusCode.Unauthorized, expired.StatusCode);
    }

    [Fact]
    public async Task A_websocket_echo_works_through_the_ports_proxy()
    {
        await using var sb = await fx.NewSandbox();
        await sb.UploadAsync("/tmp/echo.py", Encoding.UTF8.GetBytes(EchoServer));
        await sb.ExecAsync("(setsid nohup /usr/bin/python3 /tmp/echo.py >/tmp/echo.log 2>&1 &)");
        await ServerFixture.WaitUntil(() => NetworkFixture.ProbeAsync(sb, "127.0.0.1", 8765).Result == "open", "the echo server in the sandbox");

        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + fx.ApiKey);
        var uri = new UriBuilder(fx.Server.Address) { Scheme = "ws", Path = $"/v1/sandboxes/{sb.Id}/ports/8765/" }.Uri;
        await ws.ConnectAsync(uri, CancellationToken.None);
        foreach (var message in new[] { "hello", new string('x', 1000) })
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes(message), WebSocketMessageType.Text, true, CancellationToken.None);
            var buffer = new byte[4096];
            var got = await ws.ReceiveAsync(buffer, CancellationToken.None);
            Assert.Equal(message, Encoding.UTF8.GetString(buffer, 0, got.Count));
        }
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    [Fact]
    public async Task A_port_nothing_listens_on_is_a_502_that_says_so()
    {
        await using var sb = await fx.NewSandbox();
        var reply = await fx.Http.GetAsync($"/v1/sandboxes/{sb.Id}/ports/8999/");
        Assert.Equal(HttpStatusCode.BadGateway, reply.StatusCode);
        Assert.Contains("port_unreachable", await reply.Content.ReadAsStringAsync());
    }
}
