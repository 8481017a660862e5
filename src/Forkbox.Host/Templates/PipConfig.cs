using Forkbox.Core.Templates;

namespace Forkbox.Host.Templates;

/// <summary>
/// pip's configuration, /etc/pip.conf, in the built-in templates (default and python-datasci share
/// one root). Debian marks its Python "externally managed" (PEP 668: /usr/lib/python3.X/EXTERNALLY-MANAGED),
/// so pip refused `pip install` and `pip install --user` alike; in a sandbox that guard protects
/// nothing, since what pip writes goes to the sandbox's own layer (/usr/local as root, ~/.local
/// with --user) and the template's files stay as they are. A file rather than an environment
/// variable, so that every process sees it, `env -i` included, and the env given at create means
/// only what the client said. The root has <see cref="WithoutNetwork"/>, for the default
/// "network": "none"; <see cref="Networking.SandboxEgress"/> puts <see cref="WithEgress"/> in its place.
/// </summary>
public static class PipConfig
{
    public const string Path = "/etc/pip.conf";

    private const string Common = """
        # Written by forkbox. Debian's Python is marked externally managed (PEP 668); in a sandbox,
        # pip installs into the sandbox's own layer (/usr/local as root, ~/.local with --user) and
        # the template's files and Debian's packages stay as they are.
        [global]
        break-system-packages = true
        # root is the sandbox's user: pip's warning about running as root is meant for hosts.
        root-user-action = ignore
        disable-pip-version-check = true

        """;

    /// <summary>For a sandbox with egress: pip's own defaults for the index, retries and timeouts.</summary>
    public const string WithEgress = Common;

    /// <summary>
    /// For a sandbox without network: an index URL in the reserved .invalid domain (RFC 2606: it
    /// never resolves) whose name is the hint, since pip prints "Looking in indexes: URL" first, and
    /// no retries, so that the attempt fails at once rather than after 8 s of name lookups. An index
    /// named on the command line or in PIP_INDEX_URL still wins, and fails as fast.
    /// </summary>
    public const string WithoutNetwork = Common + """
        # This sandbox has "network": "none" (loopback only), so no package index can be reached.
        # Create the sandbox with "network": "egress" to install from one; here, pip installs files
        # you upload (pip install ./NAME.whl, or pip install --no-index --find-links DIR NAME).
        index-url = https://network-none.invalid/this-sandbox-has-network-none--create-it-with-network-egress/simple
        retries = 0
        timeout = 5

        """;

    /// <summary>Whether sandboxes of <paramref name="template"/> have this file: the built-in ones (a built template's /etc is its own).</summary>
    public static bool IsIn(TemplateDefinition template) => template.RootDir is null;

    /// <summary>Writes the file for a sandbox without network into a template root being made.</summary>
    public static void WriteInto(string root) => File.WriteAllText(System.IO.Path.Combine(root, Path.TrimStart('/')), WithoutNetwork);
}
