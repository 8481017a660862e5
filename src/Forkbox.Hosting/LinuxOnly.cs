// Keys files are written mode 0600; the servers run on Linux (the edge too, though it makes no Linux calls).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
