using System.Buffers;
using Forkbox.Core.Errors;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Host.Api;

/// <summary>
/// A request's body (an upload, or a call's JSON), read into an array rented from a pool and
/// returned on dispose: uploads of tens of megabytes one after the other reuse one buffer instead
/// of leaving each its own on the large object heap until the next full collection, and calls
/// reuse theirs instead of allocating one each.
/// </summary>
public sealed class UploadBuffer : IDisposable
{
    /// <summary>
    /// Not ArrayPool.Shared: it keeps a returned array in the returning thread's own slot first,
    /// where only that thread can rent it again. Uploads whose reads resume on different pool
    /// threads then each left a 64 MiB array behind: 16 uploads to one sandbox, one at a time,
    /// held 470 to 790 MiB (ExhaustionTests). This pool's arrays are anyone's; up to four per size
    /// are kept.
    /// </summary>
    private static readonly ArrayPool<byte> Pool = ArrayPool<byte>.Create(maxArrayLength: 1 << 30, maxArraysPerBucket: 4);

    private byte[] _array;

    private UploadBuffer(byte[] array, int length)
    {
        _array = array;
        Length = length;
    }

    public int Length { get; }

    public ReadOnlyMemory<byte> Memory => _array.AsMemory(0, Length);

    /// <summary>
    /// Reads the request body; over <paramref name="limit"/> bytes is a 413, before or while
    /// reading, whose message calls the body <paramref name="what"/>.
    /// </summary>
    public static async Task<UploadBuffer> ReadAsync(HttpContext ctx, long limit, string what = "upload")
    {
        if (ctx.Request.ContentLength > limit)
            throw new PayloadTooLargeException($"{what} of {ctx.Request.ContentLength} bytes is over this server's limit of {limit} bytes");
        var pool = Pool;
        var array = pool.Rent((int)Math.Min(ctx.Request.ContentLength ?? 64 << 10, limit) + 1);
        var length = 0;
        try
        {
            while (true)
            {
                if (length == array.Length)
                {
                    var bigger = pool.Rent((int)Math.Min((long)array.Length * 2, limit + 1));
                    array.AsSpan(0, length).CopyTo(bigger);
                    pool.Return(array);
                    array = bigger;
                }
                int read;
                try
                {
                    read = await ctx.Request.Body.ReadAsync(array.AsMemory(length), ctx.RequestAborted).ConfigureAwait(false);
                }
                catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
                {
                    // Kestrel's cap (HostServer: the limit + 1) counts bytes as they arrive, ahead
                    // of this loop, and its message names that cap: name the limit instead.
                    throw new PayloadTooLargeException($"{what} is over this server's limit of {limit} bytes");
                }
                if (read == 0) break;
                length += read;
                if (length > limit)
                    throw new PayloadTooLargeException($"{what} is over this server's limit of {limit} bytes");
            }
            return new UploadBuffer(array, length);
        }
        catch
        {
            pool.Return(array);
            throw;
        }
    }

    public void Dispose()
    {
        var array = Interlocked.Exchange(ref _array, []);
        if (array.Length > 0) Pool.Return(array);
    }
}
