using System.Text;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;
using ModelContextProtocol.Protocol;

namespace Forkbox.Cli.Mcp;

/// <summary>
/// Tool results as text a model reads well: labelled sections, only those with something in
/// them, and always the exit code, so the model never has to guess what happened.
/// </summary>
internal static class ToolResults
{
    /// <summary>What a tool result may hold: a model's context is the limit, not the server's 16 MiB of output.</summary>
    public const int MaxChars = 100_000;

    public static CallToolResult Text(string text, bool isError = false) => new()
    {
        Content = [new TextContentBlock { Text = Cap(text) }],
        IsError = isError,
    };

    /// <summary>Keeps the head and the tail (where an exit code and a traceback are) of a text past <see cref="MaxChars"/>.</summary>
    internal static string Cap(string text)
    {
        if (text.Length <= MaxChars) return text;
        var keep = MaxChars / 2;
        return text[..keep] +
               $"\n[… {text.Length - 2 * keep} characters left out; write large output to a file and read parts of it]\n" +
               text[^keep..];
    }

    public static CallToolResult Error(string message) => Text(message, isError: true);

    /// <summary>
    /// A run_code or exec call: stdout, stderr, the result value, the uncaught exception with its
    /// traceback, the exit code. An error when the code raised or exited nonzero.
    /// </summary>
    public static CallToolResult Execution(Execution run, string language)
    {
        var text = new StringBuilder();
        var stderr = run.Stderr;
        // The REPL writes an uncaught exception's traceback to stderr as well: show it once, as the error.
        if (run.Error is { Traceback.Length: > 0 } error && stderr.EndsWith(error.Traceback.TrimEnd('\n'), StringComparison.Ordinal))
            stderr = stderr[..^error.Traceback.TrimEnd('\n').Length].TrimEnd('\n');
        Section(text, "stdout", run.Stdout);
        Section(text, "stderr", stderr);
        if (run.Result is { } value) Section(text, "result", Describe(value));
        if (run.Error is { } e)
            Section(text, "error", e.Traceback.Length > 0 ? e.Traceback.TrimEnd('\n') : $"{e.Name}: {e.Value}");
        if (run.TimedOut)
            text.Append(language == "python"
                ? "[timed out: the cell was interrupted at timeout_s; the REPL and its variables survive]\n"
                : "[timed out: the command's processes were killed at timeout_s]\n");
        text.Append("[exit code ").Append(run.ExitCode).Append(']');
        return Text(text.ToString(), isError: run.ExitCode != 0 || run.Error is not null);
    }

    public static CallToolResult Listing(string path, IReadOnlyList<FileEntry> entries)
    {
        var text = new StringBuilder();
        text.Append(path).Append(": ").Append(entries.Count).Append(entries.Count == 1 ? " entry" : " entries").Append('\n');
        foreach (var e in entries)
        {
            text.Append(e.Name);
            text.Append(e.Type switch
            {
                "dir" => "/",
                "file" => $"  ({e.Size} bytes)",
                _ => $"  ({e.Type})",
            });
            text.Append('\n');
        }
        return Text(text.ToString().TrimEnd('\n'));
    }

    /// <summary>A downloaded file: its text when it is UTF-8 without NUL bytes, else base64, said so on the first line.</summary>
    public static CallToolResult File(string path, byte[] bytes)
    {
        if (bytes.Length == 0) return Text($"[{path} is empty: 0 bytes]");
        if (Array.IndexOf(bytes, (byte)0) < 0)
        {
            try
            {
                return Text(StrictUtf8.GetString(bytes));
            }
            catch (DecoderFallbackException)
            {
            }
        }
        return Text($"[binary file {path}, {bytes.Length} bytes, base64 below]\n{Convert.ToBase64String(bytes)}");
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static void Section(StringBuilder text, string name, string body)
    {
        if (body.Length == 0) return;
        text.Append('[').Append(name).Append("]\n").Append(body).Append('\n');
    }

    // A string result is shown as is (it is either the str the code returned or the repr of a value
    // that has no JSON form); anything else as its JSON.
    private static string Describe(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? value.GetString() ?? "" : value.GetRawText();
}
