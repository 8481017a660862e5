using System.CommandLine;
using System.Globalization;
using Forkbox.Client;

namespace Forkbox.Cli;

/// <summary>`forkbox sandbox files upload|download|ls|rm`: a sandbox's files from the shell; - is stdin or stdout.</summary>
internal static class SandboxFilesCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();
        var id = new Argument<string>("id") { Description = "Sandbox id (sbx_…)" };

        var local = new Argument<string>("local") { Description = "The file on this machine (- for stdin)" };
        var remote = new Argument<string>("remote") { Description = "Absolute path in the sandbox (parent directories are made)" };
        var upload = new Command("upload", "Write a local file (or stdin) into the sandbox.") { host, apiKey, id, local, remote };
        upload.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var from = parse.GetValue(local)!;
            // Opened before the sandbox is reached, so a missing local file is said first and nothing is written.
            await using var content = from == "-" ? Console.OpenStandardInput() : File.OpenRead(from);
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, SandboxCommand.Client(parse, host, apiKey), ct);
            await sb.UploadAsync(parse.GetValue(remote)!, content, ct);
        }));

        var source = new Argument<string>("remote") { Description = "Absolute path of a file in the sandbox" };
        var target = new Argument<string?>("local") { Description = "Where to write it (default, or -: stdout)", Arity = ArgumentArity.ZeroOrOne };
        var download = new Command("download", "Copy a file of the sandbox to a local file or stdout.") { host, apiKey, id, source, target };
        download.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, SandboxCommand.Client(parse, host, apiKey), ct);
            var to = parse.GetValue(target) ?? "-";
            if (to == "-")
            {
                await using var stdout = Console.OpenStandardOutput();
                await sb.DownloadAsync(parse.GetValue(source)!, stdout, ct);
                return;
            }
            // Into a temporary file beside the target, so a failed download leaves no half file under its name.
            var tmp = to + ".forkbox-part";
            try
            {
                await using (var file = File.Create(tmp)) await sb.DownloadAsync(parse.GetValue(source)!, file, ct);
                File.Move(tmp, to, overwrite: true);
            }
            finally
            {
                File.Delete(tmp);
            }
        }));

        var dir = new Argument<string>("path") { Description = "Directory in the sandbox", DefaultValueFactory = _ => "/root" };
        var ls = new Command("ls", "List a directory of the sandbox: type, size in bytes, modified (UTC), name.") { host, apiKey, id, dir };
        ls.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, SandboxCommand.Client(parse, host, apiKey), ct);
            foreach (var e in await sb.ListAsync(parse.GetValue(dir)!, ct))
            {
                var mtime = DateTimeOffset.FromUnixTimeMilliseconds((long)(e.Mtime * 1000)).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
                Console.WriteLine($"{e.Type,-7} {e.Size,12} {mtime} {e.Name}{(e.Type == "dir" ? "/" : "")}");
            }
        }));

        var path = new Argument<string>("path") { Description = "File or directory in the sandbox" };
        var recursive = new Option<bool>("--recursive", "-r") { Description = "Delete a directory and everything in it" };
        var rm = new Command("rm", "Delete a file (or, with -r, a directory) of the sandbox.") { host, apiKey, id, path, recursive };
        rm.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var sb = await Sandbox.ConnectAsync(parse.GetValue(id)!, SandboxCommand.Client(parse, host, apiKey), ct);
            await sb.DeleteFileAsync(parse.GetValue(path)!, parse.GetValue(recursive), ct);
        }));

        return new Command("files", "Upload, download, list and delete a sandbox's files.") { upload, download, ls, rm };
    }
}
