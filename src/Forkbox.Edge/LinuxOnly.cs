// The edge runs from the forkbox binary with hostd, which is built for Linux; it makes no Linux calls itself.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
