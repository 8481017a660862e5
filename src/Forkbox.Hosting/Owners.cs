namespace Forkbox.Hosting;

/// <summary>Who owns a sandbox: the name of the API key that made it.</summary>
public static class Owners
{
    /// <summary>The owner of sandboxes made on a server without API keys.</summary>
    public const string Local = "local";

    /// <summary>The header an edge names the request's owner (its API key's name) in; honoured only by a host without keys of its own.</summary>
    public const string Header = "X-Forkbox-Owner";
}
