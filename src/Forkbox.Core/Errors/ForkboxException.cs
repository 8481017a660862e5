namespace Forkbox.Core.Errors;

/// <summary>
/// An error the API reports to its caller. Each subclass is one error code with one HTTP status;
/// the host maps them to responses in one place (Forkbox.Host/Api/ErrorResponses.cs).
/// </summary>
public abstract class ForkboxException(string message, Exception? inner = null) : Exception(message, inner)
{
    public abstract int Status { get; }
    public abstract string Code { get; }
}

/// <summary>400: the request is malformed or asks for something invalid.</summary>
public sealed class BadRequestException(string message) : ForkboxException(message)
{
    public override int Status => 400;
    public override string Code => "bad_request";
}

/// <summary>401: no API key, or a key the server does not know.</summary>
public sealed class UnauthorizedException(string message) : ForkboxException(message)
{
    public override int Status => 401;
    public override string Code => "unauthorized";
}

/// <summary>
/// 403 admin_required: a route that changes or shows server-wide state (pools, templates, metrics)
/// asked with an ordinary key, on a server that has keys.
/// </summary>
public sealed class AdminRequiredException(string what) : ForkboxException(
    $"{what} needs an admin key: make one with `forkbox keys create --name NAME --admin` and send it as 'Authorization: Bearer KEY'")
{
    public override int Status => 403;
    public override string Code => "admin_required";
}

/// <summary>404: no such sandbox, file or template.</summary>
public sealed class NotFoundException(string message, string code = "not_found") : ForkboxException(message)
{
    public override int Status => 404;
    public override string Code { get; } = code;
}

/// <summary>409: the sandbox is not in a state that allows the call.</summary>
public sealed class ConflictException(string message, string code = "conflict") : ForkboxException(message)
{
    public override int Status => 409;
    public override string Code { get; } = code;
}

/// <summary>413: a body or file over the configured limit.</summary>
public sealed class PayloadTooLargeException(string message) : ForkboxException(message)
{
    public override int Status => 413;
    public override string Code => "too_large";
}

/// <summary>429: over a rate or count limit; the reply carries Retry-After when a wait is known.</summary>
public sealed class RateLimitedException(string message, int? retryAfterS = null, string code = "rate_limited") : ForkboxException(message)
{
    public override int Status => 429;
    public override string Code { get; } = code;
    public int? RetryAfterS { get; } = retryAfterS;
}

/// <summary>503: the host has no room for another sandbox.</summary>
public sealed class AtCapacityException(string message) : ForkboxException(message)
{
    public override int Status => 503;
    public override string Code => "at_capacity";
}

/// <summary>503: the host that holds a sandbox (or every host that could take a create) is not reachable.</summary>
public sealed class HostUnavailableException(string message) : ForkboxException(message)
{
    public override int Status => 503;
    public override string Code => "host_unavailable";
}

/// <summary>500: the sandbox machinery failed (set-up, agent, zygote).</summary>
public sealed class ExecutorException(string message, Exception? inner = null) : ForkboxException(message, inner)
{
    public override int Status => 500;
    public override string Code => "executor_error";
}

/// <summary>507: the sandbox's disk (its writable layer or /tmp) is full.</summary>
public sealed class InsufficientStorageException(string message) : ForkboxException(message)
{
    public override int Status => 507;
    public override string Code => "no_space";
}
