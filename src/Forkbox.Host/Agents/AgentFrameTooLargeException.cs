namespace Forkbox.Host.Agents;

/// <summary>
/// An agent declared a frame longer than hostd accepts at that point of the protocol: the agent is
/// hostile or broken (user code runs in its process), and its channel is dropped unread. An
/// <see cref="IOException"/>, so a caller that does not handle it treats it as a lost channel.
/// </summary>
public sealed class AgentFrameTooLargeException(string part, long declared, long max)
    : IOException($"the sandbox's agent sent a frame whose {part} is {declared} bytes, over the {max} bytes hostd accepts there; the sandbox was closed")
{
}
