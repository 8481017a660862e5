namespace Forkbox.Host.Agents;

/// <summary>
/// An agent sent a frame that is not the message the protocol expects there: it is broken or
/// hostile (user code runs in its process). An <see cref="IOException"/>, so that
/// <see cref="AgentFrame.IsChannelLost"/> counts it as a lost channel: after it the channel cannot
/// be trusted to be in step.
/// </summary>
public sealed class AgentProtocolException(string message, Exception? inner = null) : IOException(message, inner)
{
}
