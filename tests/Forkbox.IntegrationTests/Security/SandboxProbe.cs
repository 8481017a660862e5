namespace Forkbox.IntegrationTests.Security;

/// <summary>Python the security tests run in a sandbox's REPL before their own attempts.</summary>
public static class SandboxProbe
{
    /// <summary>attempt(fn): what fn() returns, or the errno name (EPERM, ENOTDIR, …) of the OSError it raised.</summary>
    public const string Attempt = """
        import errno, os
        def attempt(fn):
            try:
                return fn()
            except OSError as e:
                return errno.errorcode.get(e.errno, e.errno)

        """;
}
