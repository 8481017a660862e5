using System.Runtime.InteropServices;

namespace Forkbox.Linux.Interop;

/// <summary>
/// libnftables, the library behind the `nft` tool (Debian package nftables): the same command
/// language, run in-process, so that adding a sandbox's rules costs microseconds, not a process.
/// </summary>
internal static partial class LibNftables
{
    public const string Library = "libnftables.so.1";

    /// <summary>see: man 3 libnftables (nft_ctx_new, NFT_CTX_DEFAULT = 0)</summary>
    [LibraryImport(Library, EntryPoint = "nft_ctx_new")]
    public static partial nint CtxNew(uint flags);

    [LibraryImport(Library, EntryPoint = "nft_ctx_free")]
    public static partial void CtxFree(nint ctx);

    /// <summary>Collect error messages in a buffer instead of printing them to stderr.</summary>
    [LibraryImport(Library, EntryPoint = "nft_ctx_buffer_error")]
    public static partial int CtxBufferError(nint ctx);

    [LibraryImport(Library, EntryPoint = "nft_ctx_buffer_output")]
    public static partial int CtxBufferOutput(nint ctx);

    [LibraryImport(Library, EntryPoint = "nft_ctx_get_error_buffer")]
    public static partial nint CtxGetErrorBuffer(nint ctx);

    [LibraryImport(Library, EntryPoint = "nft_ctx_get_output_buffer")]
    public static partial nint CtxGetOutputBuffer(nint ctx);

    /// <summary>Runs one batch of commands atomically; 0 on success.</summary>
    [LibraryImport(Library, EntryPoint = "nft_run_cmd_from_buffer", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RunCmdFromBuffer(nint ctx, string buffer);
}
