namespace Forkbox.Core.Wire;

/// <summary>
/// The MIME types of a result's or a display's bundle (<see cref="ExecEvent.Mime"/>), and the
/// field each one is in the notebook protocols clients already speak: E2B's code interpreter
/// <c>Result</c> (text, html, markdown, svg, png, jpeg, pdf, latex, json, javascript; any other
/// type goes in its <c>extra</c>) and Jupyter's <c>data</c>, which is the bundle itself. A result
/// event is E2B's <c>is_main_result: true</c> (Jupyter's execute_result), a display event
/// <c>false</c> (display_data).
/// </summary>
public static class ResultMime
{
    public const string Text = "text/plain";
    public const string Html = "text/html";
    public const string Markdown = "text/markdown";
    public const string Svg = "image/svg+xml";
    public const string Png = "image/png";
    public const string Jpeg = "image/jpeg";
    public const string Pdf = "application/pdf";
    public const string Latex = "text/latex";
    public const string Json = "application/json";
    public const string JavaScript = "application/javascript";

    /// <summary>The E2B <c>Result</c> field of a MIME type, or null for one that goes in its <c>extra</c>.</summary>
    public static string? E2bField(string mimeType) => mimeType switch
    {
        Text => "text",
        Html => "html",
        Markdown => "markdown",
        Svg => "svg",
        Png => "png",
        Jpeg => "jpeg",
        Pdf => "pdf",
        Latex => "latex",
        Json => "json",
        JavaScript => "javascript",
        _ => null,
    };

    /// <summary>Whether the type's content is base64 text (image/png, image/jpeg, application/pdf) rather than text or JSON.</summary>
    public static bool IsBase64(string mimeType) => mimeType is Png or Jpeg or Pdf;
}
