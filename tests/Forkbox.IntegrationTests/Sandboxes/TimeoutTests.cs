using System.Net;
using System.Text;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>POST /timeout moves a sandbox's expiry; a call cut short by expiry says so.</summary>
[Collection(ServerCollection.Name)]
public sealed class TimeoutTests(ServerFixture fx)
{
    [Fact]
    public async Task Set_timeout_extends_a_sandbox_past_its_first_timeout()
    {
        await using var sb = await fx.NewSandbox(new() { TimeoutS = 2 });
        var before = DateTimeOffset.UtcNow;
        var info = await sb.SetTimeoutAsync(30);
        Assert.InRange(info.ExpiresAt!.Value, before.AddSeconds(29), DateTimeOffset.UtcNow.AddSeconds(31));
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.Equal("1", (await sb.RunCodeAsync("print(1)")).Stdout);
        Assert.Equal(info.ExpiresAt, (await sb.RefreshAsync()).ExpiresAt);
    }

    [Fact]
    public async Task Set_timeout_can_shorten_it_too()
    {
        var sb = await fx.NewSandbox(new() { TimeoutS = 300 });
        await sb.SetTimeoutAsync(1);
        await ServerFixture.WaitUntil(() => !fx.Server.Sandboxes.All.Any(s => s.Id == sb.Id), "the sandbox to expire", 10);
        Assert.Equal(404, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.RefreshAsync())).Status);
    }

    [Theory]
    [InlineData("{\"timeout_s\": 0}", "timeout_s must be between 1 and")]
    [InlineData("{\"timeout_s\": -5}", "timeout_s must be between 1 and")]
    [InlineData("{\"timeout_s\": 1e12}", "timeout_s must be between 1 and")]
    [InlineData("{}", "send {\"timeout_s\": N}")]
    [InlineData("", "send {\"timeout_s\": N}")]
    [InlineData("{\"timeout_s\": \"soon\"}", "timeout_s")]
    [InlineData("{\"timeout\": 30}", "timeout_s")]
    public async Task Bad_timeouts_are_400_and_say_what_to_send(string body, string says)
    {
        await using var sb = await fx.NewSandbox();
        var expires = sb.Info.ExpiresAt;
        using var resp = await fx.Http.PostAsync($"/v1/sandboxes/{sb.Id}/timeout", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await resp.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        using var error = System.Text.Json.JsonDocument.Parse(text);
        Assert.Contains(says, error.RootElement.GetProperty("error").GetString());
        Assert.Equal("bad_request", error.RootElement.GetProperty("code").GetString());
        Assert.Equal(expires, (await sb.RefreshAsync()).ExpiresAt);
    }

    [Fact]
    public async Task A_persistent_sandbox_has_no_timeout_to_set()
    {
        await using var sb = await fx.NewSandbox(new() { Persistent = true });
        var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.SetTimeoutAsync(30));
        Assert.Equal((409, "wrong_state"), (e.Status, e.Code));
        Assert.Contains("never expires", e.ServerMessage);
        using var unknown = await fx.Http.PostAsync("/v1/sandboxes/sb-nope/timeout", new StringContent("{\"timeout_s\": 30}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task A_call_running_when_its_sandbox_expires_says_timeout_s_was_reached()
    {
        var sb = await fx.NewSandbox(new() { TimeoutS = 3 });
        var r = await sb.RunCodeAsync("import time; time.sleep(30)", timeoutS: 60);
        Assert.Contains("forkbox: sandbox reached its timeout_s of 3 s and was deleted", r.Stderr);
        Assert.DoesNotContain("closed", r.Stderr);
        Assert.Equal("SandboxDied", r.Error?.Name);
    }
}
