namespace Forkbox.Agent;

/// <summary>Where the Python agent package is on disk once built (copied beside the assemblies).</summary>
public static class AgentFiles
{
    /// <summary>The directory to put on the zygote's sys.path: it holds the forkbox_agent package.</summary>
    public static string PythonPath => Path.Combine(AppContext.BaseDirectory, "agent");

    /// <summary>
    /// forkbox_agent/error_codes.json, the error table the agent answers with, as embedded in this
    /// assembly (the same file is shipped beside the agent's modules).
    /// </summary>
    public static Stream OpenErrorCodes() =>
        typeof(AgentFiles).Assembly.GetManifestResourceStream("Forkbox.Agent.error_codes.json")
        ?? throw new InvalidOperationException("Forkbox.Agent was built without its error_codes.json resource");
}
