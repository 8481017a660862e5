namespace Forkbox.Linux;

/// <summary>Who hostd runs as.</summary>
public static class Privileges
{
    public static bool IsRoot => Interop.Libc.Geteuid() == 0;
}
