// The edge runs from the forkbox binary with hostd, which is built for Linux; it reuses hostd's key store and error shape.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
