using System.Text.Json;
using Forkbox.Agent;
using Forkbox.Core.Errors;

namespace Forkbox.Host.Agents;

/// <summary>
/// The agent's error codes: which code a file op's errno answers (the agent's side), and which
/// HTTP status and API error code each answers the client with (hostd's side). One table for
/// both, forkbox_agent/error_codes.json, which the agent reads beside its modules and hostd
/// embedded in Forkbox.Agent.
/// </summary>
public sealed class AgentErrorCodes
{
    /// <summary>A file or directory the call names does not exist (404 file_not_found).</summary>
    public const string NotFound = "not_found";
    /// <summary>A file over the read's limit (413).</summary>
    public const string TooLarge = "too_large";
    /// <summary>The sandbox's disk is full (507).</summary>
    public const string NoSpace = "no_space";
    /// <summary>The agent failed (500 executor_error): a bug of its, or a fork that could not be made.</summary>
    public const string AgentError = "agent_error";
    /// <summary>The call was interrupted (SIGINT) before it answered.</summary>
    public const string Interrupted = "interrupted";

    /// <summary>The table shipped with the agent.</summary>
    public static AgentErrorCodes Default { get; } = Load(AgentFiles.OpenErrorCodes());

    private readonly AgentErrorTable _table;

    private AgentErrorCodes(AgentErrorTable table) => _table = table;

    /// <summary>The code of an OSError by its errno name (ENOENT …), as the agent answers it.</summary>
    public IReadOnlyDictionary<string, string> ByErrno => _table.Errno;

    /// <summary>The code of an OSError whose errno <see cref="ByErrno"/> does not list.</summary>
    public string ErrnoDefault => _table.ErrnoDefault;

    /// <summary>Every code the table lists, with its answer to the client.</summary>
    public IReadOnlyDictionary<string, AgentErrorCode> Codes => _table.Codes;

    /// <summary>The answer to a code the table does not list (or none).</summary>
    public AgentErrorCode Fallback => _table.Default;

    /// <summary>The answer to the client for an agent's fail <paramref name="code"/>.</summary>
    public AgentErrorCode For(string? code) => code is not null && _table.Codes.TryGetValue(code, out var c) ? c : _table.Default;

    /// <summary>The API error a fail answer of a call becomes, with the agent's <paramref name="message"/>.</summary>
    public ForkboxException ToException(string? code, string message) => Make(For(code), message);

    private static ForkboxException Make(AgentErrorCode c, string message) => c.Status switch
    {
        404 => new NotFoundException(message, c.ApiCode),
        413 => new PayloadTooLargeException(message),
        500 => new ExecutorException(message),
        507 => new InsufficientStorageException(message),
        _ => new BadRequestException(message),
    };

    /// <summary>
    /// Reads a table and checks that each of its answers is one an API error type gives (status
    /// and code), so that a mistake in the file fails at start-up, not in a client's call.
    /// </summary>
    public static AgentErrorCodes Load(Stream json)
    {
        AgentErrorTable table;
        using (json)
            table = JsonSerializer.Deserialize(json, AgentJson.Default.AgentErrorTable)
                    ?? throw new InvalidDataException("error_codes.json is empty");
        foreach (var (code, answer) in table.Codes.Append(new("(default)", table.Default)))
        {
            var made = Make(answer, "");
            if (made.Status != answer.Status || made.Code != answer.ApiCode)
                throw new InvalidDataException(
                    $"error_codes.json: code '{code}' answers {answer.Status} {answer.ApiCode}, which no API error gives (the nearest is {made.Status} {made.Code})");
        }
        if (!table.Codes.ContainsKey(table.ErrnoDefault) || table.Errno.Values.Any(c => !table.Codes.ContainsKey(c)))
            throw new InvalidDataException("error_codes.json: every code an errno answers must be listed under codes");
        return new AgentErrorCodes(table);
    }
}

/// <summary>What hostd answers the client for one agent error code: an HTTP status and the API's error code.</summary>
public sealed record AgentErrorCode(int Status, string ApiCode);

/// <summary>error_codes.json as it is on disk.</summary>
public sealed record AgentErrorTable(string? About, Dictionary<string, string> Errno, string ErrnoDefault,
    Dictionary<string, AgentErrorCode> Codes, AgentErrorCode Default);
