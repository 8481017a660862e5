using System.Net;
using System.Text;
using System.Text.Json;
using Forkbox.Client;
using Xunit.Abstractions;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// A seeded fuzz of every route: malformed JSON, wrong types, huge and negative numbers, invalid
/// UTF-8, path tricks, unknown ids and wrong states. Every answer must be the status the request
/// deserves, a 4xx, with the documented error body {"error": "…", "code": "…"}; and the server keeps
/// serving throughout. The seed is printed: FORKBOX_FUZZ_SEED=N replays a run.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BadInputTests(ServerFixture fx, ITestOutputHelper output)
{
    private const int Requests = 1500;

    private static readonly HashSet<string> DocumentedCodes =
    [
        "bad_request", "unauthorized", "not_found", "file_not_found", "sandbox_dead", "sandbox_busy", "wrong_state",
        "lost", "has_forks", "name_taken", "template_in_use", "template_exists", "too_large", "at_capacity", "no_space",
        "method_not_allowed",
    ];

    /// <summary>
    /// One bad request and the statuses it may get. <paramref name="Protocol"/>: a request line that
    /// Kestrel itself refuses (a NUL in the path, a line over its 8 KB limit) before any handler runs;
    /// it answers 400 or 414 with an empty body, which no application code can change.
    /// </summary>
    private sealed record BadRequest(string Kind, HttpMethod Method, string Path, byte[]? Body, int[] Expected, bool Protocol = false);

    [Fact]
    public async Task Every_route_answers_bad_input_with_a_documented_4xx_and_keeps_serving()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("FORKBOX_FUZZ_SEED"), out var s) ? s : Environment.TickCount & 0x7fffffff;
        Console.WriteLine($"BadInputTests seed {seed} (FORKBOX_FUZZ_SEED={seed} replays it)");
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);

        await using var live = await fx.NewSandbox();
        await using var dead = await fx.NewSandbox();
        Forkbox.Linux.Processes.Signal(fx.Server.Sandboxes.Get(dead.Id).Pid, Forkbox.Linux.Processes.SIGKILL);
        await ServerFixture.WaitUntil(() => dead.RefreshAsync().Result.State == "dead", "the killed sandbox being marked dead", 10);
        await using var parent = await fx.NewSandbox();
        var fork = (await parent.ForkAsync()).Single();
        await using var _ = fork;
        var closed = (await fx.NewSandbox()).Id;
        Assert.Equal(HttpStatusCode.NoContent, (await fx.Http.DeleteAsync($"/v1/sandboxes/{closed}")).StatusCode);
        var taken = "fuzz-" + seed;
        await using var named = await fx.NewSandbox(new() { Persistent = true, Name = taken });

        var generator = new Generator(rng, live.Id, dead.Id, closed, parent.Id, taken, fx.Options.Limits.MaxSandboxes);
        var counts = new SortedDictionary<string, int>();
        for (var i = 0; i < Requests; i++)
        {
            var req = generator.Next();
            counts[req.Kind] = counts.GetValueOrDefault(req.Kind) + 1;
            var (status, body) = await Send(req);
            var what = $"request {i} of seed {seed} ({req.Kind}): {req.Method} {Shorten(req.Path)} body {Shorten(req.Body is null ? "(none)" : Encoding.UTF8.GetString(req.Body))}";
            Assert.True(req.Expected.Contains(status), $"{what} answered {status}, expected {string.Join(" or ", req.Expected)}: {Shorten(body)}");
            if (!(req.Protocol && body.Length == 0)) AssertErrorBody(body, what);
            if (i % 100 == 99) Assert.Equal("ok", await fx.Http.GetStringAsync("/v1/healthz"));
        }

        output.WriteLine(string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}")));
        Console.WriteLine($"BadInputTests: {Requests} bad requests, every one a documented 4xx: " + string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}")));
        // The sandboxes it aimed at are as they were.
        Assert.Equal("2", (await live.RunCodeAsync("print(1 + 1)")).Stdout);
        Assert.Equal("ready", (await parent.RefreshAsync()).State);
        Assert.Equal("dead", (await dead.RefreshAsync()).State);
    }

    [Fact]
    public async Task Garbage_on_the_socket_is_refused_and_the_server_keeps_serving()
    {
        var rng = new Random(1234);
        foreach (var payload in new[]
                 {
                     "GET /v1/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"u8.ToArray(),
                     "POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}"u8.ToArray(),
                     "POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"u8.ToArray(),
                     [.. "GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"u8],
                     Enumerable.Range(0, 4096).Select(_ => (byte)rng.Next(256)).ToArray(),
                 })
        {
            using var tcp = new System.Net.Sockets.TcpClient();
            await tcp.ConnectAsync(IPAddress.Loopback, fx.Server.Address.Port);
            var stream = tcp.GetStream();
            await stream.WriteAsync(payload);
            var buffer = new byte[4096];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var n = await stream.ReadAsync(buffer, cts.Token);
            var answer = Encoding.ASCII.GetString(buffer, 0, n);
            Assert.True(n == 0 || answer.StartsWith("HTTP/1.1 4", StringComparison.Ordinal), $"answered {Shorten(answer)}");
        }
        Assert.Equal("ok", await fx.Http.GetStringAsync("/v1/healthz"));
    }

    private async Task<(int Status, string Body)> Send(BadRequest req)
    {
        using var msg = new HttpRequestMessage(req.Method, req.Path);
        if (req.Body is not null)
        {
            msg.Content = new ByteArrayContent(req.Body);
            msg.Content.Headers.ContentType = new("application/json");
        }
        using var resp = await fx.Http.SendAsync(msg);
        return ((int)resp.StatusCode, await resp.Content.ReadAsStringAsync());
    }

    private static void AssertErrorBody(string body, string what)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            throw new Xunit.Sdk.XunitException($"{what}: the answer is not the JSON error body: {Shorten(body)}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            Assert.True(root.ValueKind == JsonValueKind.Object
                        && root.TryGetProperty("error", out var message) && message.ValueKind == JsonValueKind.String && message.GetString()!.Length > 0
                        && root.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String,
                $"{what}: not the documented error body: {Shorten(body)}");
            Assert.True(DocumentedCodes.Contains(root.GetProperty("code").GetString()!), $"{what}: undocumented code in {Shorten(body)}");
        }
    }

    private static string Shorten(string s) => s.Length <= 300 ? s : s[..300] + $"… ({s.Length} chars)";

    /// <summary>Bad requests, drawn from one seeded generator so that a failure replays.</summary>
    private sealed class Generator(Random rng, string live, string dead, string closed, string parent, string takenName, int maxSandboxes)
    {
        private static readonly int[] BadRequest400 = [400];
        private static readonly int[] NotFound404 = [404];
        private static readonly int[] Conflict409 = [409];

        private T Pick<T>(IReadOnlyList<T> items) => items[rng.Next(items.Count)];

        public BadRequest Next() => rng.Next(10) switch
        {
            0 or 1 => CreateBody(),
            2 => ExecBody(),
            3 => UnknownId(),
            4 => FilePath(),
            5 => ForkCount(),
            6 => WrongState(),
            7 => PoolAndTemplates(),
            8 => rng.Next(8) == 0 ? RequestLine() : Malformed(),
            _ => MergeAndDiff(),
        };

        // Values that are never valid for a field of each kind.
        private string BadNumber() => Pick(["-1", "-1e308", "1e400", "99999999999999999999", "\"5\"", "true", "[]", "{}", "\"NaN\"", "-0.0001"]);
        private string BadString() => Pick(["5", "true", "[]", "{}", "[\"a\"]", "1.5"]);
        private string BadMap() => Pick(["[]", "\"a=b\"", "5", "{\"a\": 5}", "{\"a\": [1]}", "{\"\": \"x\"}", "{\"a=b\": \"x\"}", "{\"a\": \"\\u0000\"}"]);

        private BadRequest CreateBody()
        {
            var body = rng.Next(13) switch
            {
                0 => $"{{\"timeout_s\": {BadNumber()}}}",
                1 => $"{{\"memory_mb\": {Pick(["0", "31", "-1", "2147483648", "1e10", "\"big\"", "1.5", "null2"])}}}",
                2 => $"{{\"cpus\": {Pick(["0", "-1", "1000", "\"2\"", "1e400", "[]"])}}}",
                3 => $"{{\"template\": {Pick(["\"no-such-" + rng.Next() + "\"", "5", "[]", "\"../default\"", "\"" + new string('x', 5000) + "\""])}}}",
                4 => $"{{\"env\": {BadMap()}}}",
                5 => $"{{\"metadata\": {Pick(["[]", "5", "{\"" + new string('k', 300) + "\": \"v\"}", "{\"k\": \"" + new string('v', 5000) + "\"}", "{\"k\": 5}"])}}}",
                6 => $"{{\"name\": \"x{rng.Next()}\"}}",
                7 => $"{{\"persistent\": true, \"name\": {Pick(["\"\"", "\"-lead\"", "\"a/b\"", "\"" + new string('n', 129) + "\"", "\"sp ace\"", "5"])}}}",
                8 => $"{{\"persistent\": true, \"name\": \"{takenName}\"}}",
                9 => $"{{\"idle_timeout_s\": {Pick(["5", "-5", "\"x\""])}}}",
                10 => $"{{\"persistent\": {Pick(["\"yes\"", "1", "[]"])}}}",
                11 => $"{{\"disk_mb\": {Pick(["0", "-1", "1e12", "\"10\""])}}}",
                _ => Pick(["[1, 2]", "\"a string\"", "42", "true"]),
            };
            var expected = body.Contains(takenName, StringComparison.Ordinal) ? Conflict409 : BadRequest400;
            return new("create body", HttpMethod.Post, "/v1/sandboxes", Encoding.UTF8.GetBytes(body), expected);
        }

        private BadRequest ExecBody()
        {
            var body = rng.Next(7) switch
            {
                0 => "{}",
                1 => $"{{\"code\": {BadString()}}}",
                2 => $"{{\"code\": \"1\", \"language\": {Pick(["\"ruby\"", "\"\"", "5", "\"PYTHON \""])}}}",
                3 => $"{{\"code\": \"1\", \"timeout_s\": {BadNumber()}}}",
                4 => $"{{\"code\": \"1\", \"env\": {BadMap()}}}",
                5 => $"{{\"code\": \"1\", \"cwd\": {Pick(["\"../..\"", "\"/root/../..\"", "5", "\"\\u0000\""])}}}",
                _ => $"{{\"code\": \"1\", \"rich\": {Pick(["\"yes\"", "2", "[]"])}}}",
            };
            return new("exec body", HttpMethod.Post, $"/v1/sandboxes/{live}/exec", Encoding.UTF8.GetBytes(body), BadRequest400);
        }

        private string UnknownIdText() => rng.Next(7) switch
        {
            0 => "sbx_" + Convert.ToHexString(RandomBytes(16)).ToLowerInvariant(),
            1 => closed,
            2 => "sbx_" + new string('f', rng.Next(1, 64)),
            // NUL aside: Kestrel refuses it in a path itself (the request line case).
            3 => Uri.EscapeDataString(Encoding.UTF8.GetString(RandomBytes(rng.Next(1, 40))).Replace('\0', '0')),
            4 => new string('a', rng.Next(100, 5000)),
            5 => Pick(["%2e%2e", "%ff%fe", "sbx_%2F..%2F", "..%252f", "%c0%ae"]),
            _ => Pick(["0", "-1", "null", "undefined", "sbx_"]),
        };

        private BadRequest UnknownId()
        {
            var id = UnknownIdText();
            var (method, path, body) = rng.Next(12) switch
            {
                0 => (HttpMethod.Get, $"/v1/sandboxes/{id}", (string?)null),
                1 => (HttpMethod.Delete, $"/v1/sandboxes/{id}", null),
                2 => (HttpMethod.Post, $"/v1/sandboxes/{id}/exec", "{\"code\": \"1\"}"),
                3 => (HttpMethod.Post, $"/v1/sandboxes/{id}/fork", "{\"n\": 1}"),
                4 => (HttpMethod.Post, $"/v1/sandboxes/{id}/pause", null),
                5 => (HttpMethod.Post, $"/v1/sandboxes/{id}/hibernate", null),
                6 => (HttpMethod.Post, $"/v1/sandboxes/{id}/resume", null),
                7 => (HttpMethod.Put, $"/v1/sandboxes/{id}/files?path=/root/x", "data"),
                8 => (HttpMethod.Get, $"/v1/sandboxes/{id}/files?path=/root/x", null),
                9 => (HttpMethod.Get, $"/v1/sandboxes/{id}/files/list?path=/root", null),
                10 => (HttpMethod.Post, $"/v1/sandboxes/{live}/merge_into/{id}", null),
                _ => (HttpMethod.Get, $"/v1/sandboxes/{id}/diff/{live}", null),
            };
            // %2e%2e is a dot segment: Kestrel removes it with the segment before it, so merge_into/%2e%2e
            // is POST /v1/sandboxes/{live}/, a known route that takes GET and DELETE (every other
            // case lands on a path that is no route at all).
            var expected = id == "%2e%2e" && path.StartsWith($"/v1/sandboxes/{live}/merge_into/", StringComparison.Ordinal) ? [405] : NotFound404;
            return new("unknown id", method, path, body is null ? null : Encoding.UTF8.GetBytes(body), expected);
        }

        private BadRequest RequestLine() => rng.Next(3) switch
        {
            0 => new("request line", HttpMethod.Get, $"/v1/sandboxes/{Pick(["%00", "sbx_%00", live + "%00"])}", null, [400], Protocol: true),
            1 => new("request line", HttpMethod.Get, $"/v1/sandboxes/{live}/files?path=/root/{new string('q', rng.Next(9000, 20000))}", null, [414], Protocol: true),
            _ => new("request line", HttpMethod.Get, $"/v1/sandboxes/{new string('i', rng.Next(9000, 20000))}", null, [414], Protocol: true),
        };

        private BadRequest FilePath()
        {
            var (path, expected) = rng.Next(8) switch
            {
                0 => ("", BadRequest400),
                1 => (Pick(["..", "../etc/passwd", "/root/../../etc", "a/../../b", "/..", "x/.."]), BadRequest400),
                2 => ("/root/" + new string('p', rng.Next(4097, 7000)), BadRequest400),
                3 => ("/root/a%00b", BadRequest400),
                4 => ("/root/missing-" + Convert.ToHexString(RandomBytes(6)), NotFound404),
                5 => ("/root/%ff%fe%c0%af-" + rng.Next(), NotFound404),
                6 => ("/root/" + string.Join('/', Enumerable.Repeat(new string('d', 255), 20)), new[] { 400, 404 }),
                _ => ("/root/" + new string('n', 300), new[] { 400, 404 }),
            };
            var escaped = path.Contains('%') ? path : Uri.EscapeDataString(path);
            var query = $"path={escaped}";
            return rng.Next(4) switch
            {
                0 => new("file path", HttpMethod.Get, $"/v1/sandboxes/{live}/files?{query}", null, expected),
                1 => new("file path", HttpMethod.Get, $"/v1/sandboxes/{live}/files/list?{query}", null, path.Length == 0 ? BadRequest400 : expected),
                2 => new("file path", HttpMethod.Delete, $"/v1/sandboxes/{live}/files?{query}", null, expected),
                // An upload to a missing file creates it: only the refused paths are bad uploads.
                _ => new("file path", HttpMethod.Put, $"/v1/sandboxes/{live}/files?path={Pick(["", "..", "/root/..", "/root/a%00b", "%2e%2e/x"])}", "x"u8.ToArray(), BadRequest400),
            };
        }

        private BadRequest ForkCount()
        {
            var body = $"{{\"n\": {Pick(["0", "-1", "33", "1000000", "2147483648", "1e400", "\"2\"", "1.5", "[]", "true"])}}}";
            return new("fork count", HttpMethod.Post, $"/v1/sandboxes/{live}/fork", Encoding.UTF8.GetBytes(body), BadRequest400);
        }

        private BadRequest WrongState() => rng.Next(8) switch
        {
            0 => new("wrong state", HttpMethod.Post, $"/v1/sandboxes/{dead}/exec", "{\"code\": \"1\"}"u8.ToArray(), Conflict409),
            1 => new("wrong state", HttpMethod.Post, $"/v1/sandboxes/{dead}/fork", "{\"n\": 1}"u8.ToArray(), Conflict409),
            // A dead sandbox's files stay readable (from its layers), so reading a directory is the same 400 as live;
            // changing them is refused.
            2 => rng.Next(2) == 0
                ? new("wrong state", HttpMethod.Delete, $"/v1/sandboxes/{dead}/files?path=/root/x", null, Conflict409)
                : new("wrong state", HttpMethod.Get, $"/v1/sandboxes/{dead}/files?path=/root", null, BadRequest400),
            3 => new("wrong state", HttpMethod.Put, $"/v1/sandboxes/{dead}/files?path=/root/x", "x"u8.ToArray(), Conflict409),
            4 => new("wrong state", HttpMethod.Post, $"/v1/sandboxes/{dead}/pause", null, Conflict409),
            5 => new("wrong state", HttpMethod.Post, $"/v1/sandboxes/{dead}/hibernate", null, Conflict409),
            6 => new("wrong state", HttpMethod.Post, $"/v1/sandboxes/{parent}/hibernate", null, Conflict409),
            _ => new("wrong state", HttpMethod.Get, $"/v1/sandboxes/{live}/files?path=/root", null, BadRequest400),
        };

        private BadRequest PoolAndTemplates() => rng.Next(4) switch
        {
            0 => new("pool and templates", HttpMethod.Put, "/v1/templates/default/pool",
                Encoding.UTF8.GetBytes(Pick(["{}", "{\"size\": -1}", $"{{\"size\": {maxSandboxes + 1}}}", "{\"size\": \"4\"}", "{\"size\": 1e400}", "[]"])), BadRequest400),
            1 => new("pool and templates", HttpMethod.Put, $"/v1/templates/no-such-{rng.Next()}/pool", "{\"size\": 1}"u8.ToArray(), BadRequest400),
            2 => new("pool and templates", HttpMethod.Delete, "/v1/templates/default", null, BadRequest400),
            _ => new("pool and templates", HttpMethod.Delete, $"/v1/templates/no-such-{rng.Next()}", null, BadRequest400), // "unknown template" is a 400, as documented
        };

        private BadRequest MergeAndDiff() => rng.Next(4) switch
        {
            0 => new("merge and diff", HttpMethod.Post, $"/v1/sandboxes/{live}/merge_into/{live}", null, BadRequest400),
            1 => new("merge and diff", HttpMethod.Post, $"/v1/sandboxes/{live}/merge_into/{parent}", null, BadRequest400),
            2 => new("merge and diff", HttpMethod.Get, $"/v1/sandboxes/{live}/diff/{parent}?paths={Uri.EscapeDataString(Pick(["/root/..", "..", "/root,/../etc"]))}", null, BadRequest400),
            _ => new("merge and diff", Pick(new[] { HttpMethod.Patch, HttpMethod.Put, HttpMethod.Post }), $"/v1/sandboxes/{live}/{Pick(["diff", "nothing", "files/list/x"])}", null, new[] { 404, 405 }),
        };

        /// <summary>Bodies that are not JSON at all: cut short, trailing or leading junk, invalid UTF-8, lone surrogates, deep nesting.</summary>
        private BadRequest Malformed()
        {
            // Each route with a valid body and a string field it reads, to carry invalid text.
            var (method, path, valid, field) = rng.Next(4) switch
            {
                0 => (HttpMethod.Post, "/v1/sandboxes", "{\"timeout_s\": 10, \"metadata\": {\"a\": \"b\"}}", "template"),
                1 => (HttpMethod.Post, $"/v1/sandboxes/{live}/exec", "{\"code\": \"print(1)\"}", "code"),
                2 => (HttpMethod.Post, $"/v1/sandboxes/{live}/fork", "{\"n\": 1}", "n"),
                _ => (HttpMethod.Put, "/v1/templates/default/pool", "{\"size\": 1}", "size"),
            };
            var bytes = Encoding.UTF8.GetBytes(valid);
            byte[] body = rng.Next(7) switch
            {
                0 => bytes[..rng.Next(1, bytes.Length - 1)],
                1 => [.. bytes, .. "}}"u8],
                2 => [.. "\xef\xbb\xbf\x00"u8, .. bytes[1..]],
                3 => [.. Encoding.UTF8.GetBytes($"{{\"{field}\": \""), .. RandomInvalidUtf8(), .. "\"}"u8],
                4 => Encoding.UTF8.GetBytes($"{{\"{field}\": \"{Pick(["\\ud800", "\\udfff x", "\\ud83d"])}\"}}"),
                5 => Encoding.UTF8.GetBytes(new string('[', rng.Next(65, 100_000))),
                _ => RandomBytes(rng.Next(1, 2048)),
            };
            return new("malformed JSON", method, path, body, BadRequest400);
        }

        private byte[] RandomInvalidUtf8() => rng.Next(4) switch
        {
            0 => [0xff, 0xfe],
            1 => [0xc3, 0x28],
            2 => [0xe2, 0x82],
            _ => [0xed, 0xa0, 0x80], // an encoded surrogate
        };

        private byte[] RandomBytes(int n)
        {
            var b = new byte[n];
            rng.NextBytes(b);
            return b;
        }
    }
}
