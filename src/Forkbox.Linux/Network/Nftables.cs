using System.Runtime.InteropServices;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Network;

/// <summary>
/// Runs nftables commands (the `nft` language) through libnftables. Each <see cref="Run"/> is one
/// atomic batch: it applies whole or not at all. A context is not thread-safe, so calls are serialized.
/// </summary>
public sealed class Nftables : IDisposable
{
    private readonly Lock _lock = new();
    private nint _ctx;

    private Nftables(nint ctx) => _ctx = ctx;

    /// <summary>A context, or null with the reason when libnftables is not installed (apt-get install nftables).</summary>
    public static Nftables? TryOpen(out string? why)
    {
        try
        {
            var ctx = LibNftables.CtxNew(0);
            if (ctx == 0)
            {
                why = "nft_ctx_new failed";
                return null;
            }
            LibNftables.CtxBufferError(ctx);
            LibNftables.CtxBufferOutput(ctx);
            why = null;
            return new Nftables(ctx);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            why = $"{LibNftables.Library} is not installed (Debian: apt-get install nftables)";
            return null;
        }
    }

    /// <summary>Runs a batch; returns what it printed (for list commands). Throws with nft's own message on error.</summary>
    public string Run(string commands)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_ctx == 0, this);
            var rc = LibNftables.RunCmdFromBuffer(_ctx, commands);
            var output = Marshal.PtrToStringUTF8(LibNftables.CtxGetOutputBuffer(_ctx)) ?? "";
            var error = Marshal.PtrToStringUTF8(LibNftables.CtxGetErrorBuffer(_ctx)) ?? "";
            if (rc != 0)
                throw new InvalidOperationException($"nftables refused the commands: {error.Trim()}\n{commands}");
            return output;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_ctx == 0) return;
            LibNftables.CtxFree(_ctx);
            _ctx = 0;
        }
    }
}
