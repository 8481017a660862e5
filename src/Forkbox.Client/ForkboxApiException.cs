namespace Forkbox.Client;

/// <summary>The server answered with an error: its HTTP status, machine code and message.</summary>
public sealed class ForkboxApiException(int status, string code, string message)
    : Exception($"{message} (HTTP {status}, {code})")
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public string ServerMessage { get; } = message;
}
