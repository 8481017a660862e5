namespace Forkbox.Client;

/// <summary>
/// The server answered with an error: its HTTP status, machine code and message. Each status has
/// a subclass to catch (<see cref="ForkboxNotFoundException"/>, <see cref="ForkboxConflictException"/>, …);
/// <see cref="Code"/> tells the cases of one status apart ("sandbox_busy", "name_taken", "lost", …).
/// </summary>
public class ForkboxApiException(int status, string code, string message)
    : Exception($"{message} (HTTP {status}, {code})")
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public string ServerMessage { get; } = message;

    /// <summary>The exception for a status: a subclass where there is one.</summary>
    public static ForkboxApiException From(int status, string code, string message, TimeSpan? retryAfter = null) => status switch
    {
        400 => new ForkboxBadRequestException(code, message),
        401 => new ForkboxUnauthorizedException(code, message),
        403 => new ForkboxForbiddenException(code, message),
        404 => new ForkboxNotFoundException(code, message),
        409 => new ForkboxConflictException(code, message),
        413 => new ForkboxPayloadTooLargeException(code, message),
        429 => new ForkboxRateLimitedException(code, message, retryAfter),
        500 => new ForkboxExecutorException(code, message),
        503 when code == "host_unavailable" => new ForkboxHostUnavailableException(code, message),
        503 => new ForkboxAtCapacityException(code, message),
        507 => new ForkboxInsufficientStorageException(code, message),
        _ => new ForkboxApiException(status, code, message),
    };
}

/// <summary>400: the request is malformed or asks for something invalid; the message names the field.</summary>
public sealed class ForkboxBadRequestException(string code, string message) : ForkboxApiException(400, code, message);

/// <summary>401: no API key, or one the server does not know.</summary>
public sealed class ForkboxUnauthorizedException(string code, string message) : ForkboxApiException(401, code, message);

/// <summary>403 admin_required: a server-wide setting (a pool's size, deleting a template, /metrics) asked with an ordinary key.</summary>
public sealed class ForkboxForbiddenException(string code, string message) : ForkboxApiException(403, code, message);

/// <summary>404: no such sandbox (closed, expired), file or template.</summary>
public sealed class ForkboxNotFoundException(string code, string message) : ForkboxApiException(404, code, message);

/// <summary>409: the sandbox's state does not allow the call (dead, lost, busy, a name taken…); see <see cref="ForkboxApiException.Code"/>.</summary>
public sealed class ForkboxConflictException(string code, string message) : ForkboxApiException(409, code, message);

/// <summary>413: a body or file over the server's limit.</summary>
public sealed class ForkboxPayloadTooLargeException(string code, string message) : ForkboxApiException(413, code, message);

/// <summary>429: over a rate or count limit; <see cref="RetryAfter"/> when the server said when to try again.</summary>
public sealed class ForkboxRateLimitedException(string code, string message, TimeSpan? retryAfter) : ForkboxApiException(429, code, message)
{
    public TimeSpan? RetryAfter { get; } = retryAfter;
}

/// <summary>500: the sandbox machinery failed (set-up, agent, zygote).</summary>
public sealed class ForkboxExecutorException(string code, string message) : ForkboxApiException(500, code, message);

/// <summary>503: the host has no room for another sandbox.</summary>
public sealed class ForkboxAtCapacityException(string code, string message) : ForkboxApiException(503, code, message);

/// <summary>503 host_unavailable, from an edge: the host that holds the sandbox is down or cut off.</summary>
public sealed class ForkboxHostUnavailableException(string code, string message) : ForkboxApiException(503, code, message);

/// <summary>507: the sandbox's disk (its quota, or the host's) is full.</summary>
public sealed class ForkboxInsufficientStorageException(string code, string message) : ForkboxApiException(507, code, message);
