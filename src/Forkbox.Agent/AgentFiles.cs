namespace Forkbox.Agent;

/// <summary>Where the Python agent package is on disk once built (copied beside the assemblies).</summary>
public static class AgentFiles
{
    /// <summary>The directory to put on the zygote's sys.path: it holds the forkbox_agent package.</summary>
    public static string PythonPath => Path.Combine(AppContext.BaseDirectory, "agent");
}
