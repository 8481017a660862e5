using System.Text.Json;
using System.Text.Json.Serialization;

namespace Forkbox.Host.Zygotes;

// The messages between hostd and a zygote: one JSON line each, requests on its stdin, answers on
// its stdout (forkbox_agent/zygote.py, whose op and field names are in protocol.py).
// AgentProtocolContractTests_without_root checks that each side decodes what the other encodes.

/// <summary>The ops a zygote serves (the "op" of a request line).</summary>
public static class ZygoteOps
{
    public const string Spawn = "spawn";
    public const string Graft = "graft";
    public const string Restore = "restore";

    public static readonly string[] All = [Spawn, Graft, Restore];
}

/// <summary>The zygote's first stdin line, read by its bootstrap, so that no host path is on its command line.</summary>
/// <param name="Seccomp">The path of the BPF program hostd compiled.</param>
/// <param name="OutputLimit">Bytes of output per call.</param>
public sealed record ZygoteConfig(string AgentDir, string Seccomp, IReadOnlyList<string> Preload, long OutputLimit);

/// <summary>Forks a new sandbox (forkbox_agent/isolate.py has what each field is for).</summary>
/// <param name="Uid">The first host uid of the sandbox's range.</param>
/// <param name="Env">Left out when null; pass null rather than an empty map.</param>
public sealed record ZygoteSpawnRequest(string Id, string Token, string AgentSocket, string Userns, long Uid,
    IReadOnlyList<string> CgroupProcs, string Root, int TmpSizeMb, bool Foreground, IReadOnlyList<ZygoteSpawnLayer> Layers,
    IReadOnlyDictionary<string, string>? Env)
{
    [JsonPropertyOrder(-1)] public string Op => ZygoteOps.Spawn;
}

/// <summary>One overlay of a new sandbox, and the directories made writable in it.</summary>
public sealed record ZygoteSpawnLayer(string Target, string Lower, string Upper, string Work, IReadOnlyList<ZygoteWritableDir> Writable);

/// <summary>A directory made writable in a layer, with its mode; on the wire a pair, <c>[path, mode]</c>.</summary>
[JsonConverter(typeof(ZygoteWritableDirConverter))]
public readonly record struct ZygoteWritableDir(string Path, int Mode);

/// <summary>Finishes the forks of one parent: each child gets its root and control socket (forkbox_agent/graft.py).</summary>
public sealed record ZygoteGraftRequest(string Id, string Strategy, IReadOnlyList<ZygoteGraftChild> Children)
{
    [JsonPropertyOrder(-1)] public string Op => ZygoteOps.Graft;
}

/// <summary>One fork to finish: its id and token, its PID 1 on the host, and its layers.</summary>
public sealed record ZygoteGraftChild(string Id, string Token, int Pid, string Userns, string AgentSocket, int TmpSizeMb,
    IReadOnlyList<ZygoteGraftLayer> Layers);

/// <summary>One layer of a fork: the parent's upper (<c>src_upper</c>) snapshotted into the fork's.</summary>
public sealed record ZygoteGraftLayer(string Target, string Lower, string SrcUpper, string Upper, string Work);

/// <summary>Copies a hibernated sandbox's saved uppers into a new sandbox's, re-owned from one uid range to another.</summary>
public sealed record ZygoteRestoreRequest(string Id, string Strategy, long UidFrom, long UidTo, IReadOnlyList<ZygoteRestoreLayer> Layers)
{
    [JsonPropertyOrder(-1)] public string Op => ZygoteOps.Restore;
}

public sealed record ZygoteRestoreLayer(string Src, string Dst);

/// <summary>The zygote's first stdout line: it has imported the template and serves.</summary>
public sealed record ZygoteReady(bool Ready, int Pid);

/// <summary>A line the zygote writes unasked: a sandbox's PID 1 (its child) exited, with its exit status.</summary>
public sealed record ZygoteExited(int Exited, int Status);

/// <summary>A spawn's answer: the sandbox's PID 1 as the host sees it, its set-up time and steps (milliseconds).</summary>
public sealed record ZygoteSpawnReply(string Id, bool Ok, int Pid, IReadOnlyDictionary<string, double>? Steps, double SetupMs);

/// <summary>A graft's answer: the step timings of every fork together (milliseconds).</summary>
public sealed record ZygoteGraftReply(string Id, bool Ok, IReadOnlyDictionary<string, double> Steps);

/// <summary>A restore's answer: the entries copied and the step timings (milliseconds).</summary>
public sealed record ZygoteRestoreReply(string Id, bool Ok, long Entries, IReadOnlyDictionary<string, double> Steps);

/// <summary>Any request's answer when it failed: <c>ok</c> false and why. <c>id</c> is null when the request had none.</summary>
public sealed record ZygoteFailure(string? Id, bool Ok, string? Error);

/// <summary>The fields by which hostd tells the zygote's lines apart: an exit notice, the ready line, or the answer to request <c>id</c>.</summary>
public sealed record ZygoteLine(int? Exited, bool? Ready, string? Id, bool Ok);

/// <summary>Writes and reads a <see cref="ZygoteWritableDir"/> as the pair the zygote takes.</summary>
public sealed class ZygoteWritableDirConverter : JsonConverter<ZygoteWritableDir>
{
    public override ZygoteWritableDir Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("a writable directory is [path, mode]");
        reader.Read();
        var path = reader.GetString() ?? throw new JsonException("a writable directory's path is a string");
        reader.Read();
        var mode = reader.GetInt32();
        reader.Read();
        if (reader.TokenType != JsonTokenType.EndArray) throw new JsonException("a writable directory is [path, mode]");
        return new ZygoteWritableDir(path, mode);
    }

    public override void Write(Utf8JsonWriter writer, ZygoteWritableDir value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        writer.WriteStringValue(value.Path);
        writer.WriteNumberValue(value.Mode);
        writer.WriteEndArray();
    }
}

/// <summary>Source-generated JSON for every line between hostd and a zygote.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ZygoteConfig))]
[JsonSerializable(typeof(ZygoteSpawnRequest))]
[JsonSerializable(typeof(ZygoteGraftRequest))]
[JsonSerializable(typeof(ZygoteRestoreRequest))]
[JsonSerializable(typeof(ZygoteReady))]
[JsonSerializable(typeof(ZygoteExited))]
[JsonSerializable(typeof(ZygoteSpawnReply))]
[JsonSerializable(typeof(ZygoteGraftReply))]
[JsonSerializable(typeof(ZygoteRestoreReply))]
[JsonSerializable(typeof(ZygoteFailure))]
[JsonSerializable(typeof(ZygoteLine))]
public sealed partial class ZygoteJson : JsonSerializerContext;
