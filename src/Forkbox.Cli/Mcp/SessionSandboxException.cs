namespace Forkbox.Cli.Mcp;

/// <summary>
/// A tool named a sandbox the session cannot use (one it did not create, or its main sandbox for
/// close_sandbox). It comes back to the model as a tool error, with what it can use instead.
/// </summary>
internal sealed class SessionSandboxException(string message) : Exception(message);
