using Forkbox.Agent;
using Forkbox.Core.Errors;
using Forkbox.Host.Agents;

namespace Forkbox.UnitTests.Host.Agents;

/// <summary>The one error table (forkbox_agent/error_codes.json): what the agent answers and what hostd makes of it.</summary>
[Trait("Root", "not needed")]
public sealed class AgentErrorCodesTests_without_root
{
    private static readonly AgentErrorCodes Table = AgentErrorCodes.Default;

    [Theory]
    [InlineData("not_found", 404, "file_not_found", typeof(NotFoundException))]
    [InlineData("too_large", 413, "too_large", typeof(PayloadTooLargeException))]
    [InlineData("no_space", 507, "no_space", typeof(InsufficientStorageException))]
    [InlineData("agent_error", 500, "executor_error", typeof(ExecutorException))]
    [InlineData("not_a_directory", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("is_a_directory", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("forbidden", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("exists", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("not_empty", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("file_error", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("interrupted", 400, "bad_request", typeof(BadRequestException))]
    [InlineData("something_new", 400, "bad_request", typeof(BadRequestException))]
    [InlineData(null, 400, "bad_request", typeof(BadRequestException))]
    public void Each_agent_code_answers_the_status_and_api_code_it_always_has(string? code, int status, string apiCode, Type exception)
    {
        var e = Table.ToException(code, "/root/x: why");
        Assert.IsType(exception, e);
        Assert.Equal((status, apiCode, "/root/x: why"), (e.Status, e.Code, e.Message));
        Assert.Equal(new AgentErrorCode(status, apiCode), Table.For(code));
    }

    [Fact]
    public void Errno_names_map_to_the_codes_the_agent_has_always_answered()
    {
        Assert.Equal(new Dictionary<string, string>
        {
            ["ENOENT"] = "not_found", ["ENOTDIR"] = "not_a_directory", ["EISDIR"] = "is_a_directory", ["EACCES"] = "forbidden",
            ["ENOSPC"] = "no_space", ["EDQUOT"] = "no_space", ["EEXIST"] = "exists", ["ENOTEMPTY"] = "not_empty",
        }, Table.ByErrno);
        Assert.Equal("file_error", Table.ErrnoDefault);
    }

    [Fact]
    public void The_named_codes_are_in_the_table()
    {
        foreach (var code in new[] { AgentErrorCodes.NotFound, AgentErrorCodes.TooLarge, AgentErrorCodes.NoSpace, AgentErrorCodes.AgentError, AgentErrorCodes.Interrupted })
            Assert.Contains(code, Table.Codes.Keys);
    }

    [Fact]
    public void Hostd_embeds_the_very_file_the_agent_reads()
    {
        using var embedded = AgentFiles.OpenErrorCodes();
        using var copy = new MemoryStream();
        embedded.CopyTo(copy);
        Assert.Equal(File.ReadAllBytes(Path.Combine(AgentFiles.PythonPath, "forkbox_agent", "error_codes.json")), copy.ToArray());
    }

    [Fact]
    public void The_agent_answers_each_errno_with_the_table_s_code()
    {
        var lines = AgentProtocolContractTests_without_root.RunPython("""
            import errno, os
            from forkbox_agent import files, protocol
            for name in sorted(protocol.ERRORS["errno"]) + ["EPERM", "EIO"]:
                n = getattr(errno, name)
                print(name, files.error_code(OSError(n, os.strerror(n))))
            """);
        foreach (var line in lines)
        {
            var (name, code) = (line.Split(' ')[0], line.Split(' ')[1]);
            Assert.Equal(Table.ByErrno.GetValueOrDefault(name, Table.ErrnoDefault), code);
        }
        Assert.Equal(Table.ByErrno.Count + 2, lines.Length);
    }

    [Fact]
    public void A_table_whose_answer_no_api_error_gives_is_refused_at_load()
    {
        var json = """{"errno": {}, "errno_default": "file_error", "codes": {"file_error": {"status": 418, "api_code": "teapot"}}, "default": {"status": 400, "api_code": "bad_request"}}""";
        var e = Assert.Throws<InvalidDataException>(() => AgentErrorCodes.Load(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json))));
        Assert.Contains("file_error", e.Message);
    }
}
