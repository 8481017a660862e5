using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

public sealed partial class SandboxFactory
{
    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "sandbox {SandboxId} from {Template} could not be created: {Error}")]
    private partial void LogCreateFailed(string sandboxId, string template, string error);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Error, Message = "sandbox {SandboxId}: cleanup failed")]
    private partial void LogCleanupFailed(string sandboxId, Exception error);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Information, Message = "sandbox {SandboxId} retired: closed, but its PID 1 stays until its forks are gone")]
    private partial void LogRetired(string sandboxId);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Information, Message = "retired sandbox {SandboxId}: its last fork is gone; resources released")]
    private partial void LogRetiredGone(string sandboxId);
}
