using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Forkbox.Agent;
using Forkbox.Host.Agents;
using Forkbox.Host.Zygotes;

namespace Forkbox.UnitTests.Host.Agents;

/// <summary>
/// The control channel's and the zygote's messages as the two sides write them: the agent's
/// protocol.py encodes every message it sends and hostd's records decode it; hostd encodes every
/// request and protocol.py decodes and checks it. Runs the system Python (which the zygote runs
/// too), as any user.
/// </summary>
[Trait("Root", "not needed")]
public sealed class AgentProtocolContractTests_without_root
{
    private const string Python = "/usr/bin/python3";

    [Fact]
    public void Python_encodes_every_agent_message_and_hostd_decodes_it()
    {
        var lines = RunPython("""
            import base64
            from forkbox_agent import protocol as p
            frames = {
                "hello": p.hello("sbx_1", "tok"),
                "hello_error": p.hello("sbx_2", "tok2", "OSError: no"),
                "out": p.out(7, 2, ["a", "é ✓", ""]),
                "result": p.result(7, "[1, 2]", "list", [1, 2], "json", {"text/plain": "[1, 2]"}),
                "result_repr": p.result(7, "<F>", "F", "<F>", "repr", {"text/plain": "<F>", "image/png": "iVBO", "application/json": {"a": 1}}),
                "display": p.display(7, {"text/plain": "<Figure>", "image/png": "iVBO"}),
                "error": p.error(7, "ValueError", "bad", "Traceback …\nValueError: bad\n"),
                "exit": p.exit_(7, 124, True),
                "fail": p.fail(8, p.ERR_NOT_FOUND, "/x: No such file or directory"),
                "fail_no_id": p.fail(None, p.ERR_AGENT, "KeyError: 'op'"),
                "ok": p.ok(9),
                "write_ok": p.ok(10, size=5),
                "read_ok": p.ok(11, size=3),
                "list_ok": p.ok(12, entries=[p.file_entry("a.txt", "file", 3, 1700000000.5), p.file_entry("d", "dir", 4096, 2.0)]),
                "fork_ok": p.ok(13, pids=[41, 42]),
                "hibernate_ok": p.ok(14, saved=["x", "f"], not_saved={"sock": "cannot pickle"}, modules=["json"], bytes=99,
                                     threads=["worker"], processes=["sleep 100"]),
                "restore_ok": p.ok(15, restored=["x"], not_restored={"f": "gone"}, modules=["json"], bytes=99),
            }
            for name, header in frames.items():
                print(name, base64.b64encode(p.encode(header, b"abc" if name == "read_ok" else b"")).decode())
            lines = {
                "ready": p.zygote_ready(100),
                "exited": p.zygote_exited(101, -9),
                "spawn_ok": p.spawn_ok("sbx_1", 102, {"fork": 0.5, "mounts": 1.25}, 2.5),
                "graft_ok": p.graft_ok("fork_1", {"total": 3.0}),
                "restore_ok_z": p.restore_ok("sbx_3", 12, {"snapshot": 1.0}),
                "failure": p.zygote_failure("sbx_4", "mount overlay: Invalid argument"),
            }
            for name, line in lines.items():
                print(name, base64.b64encode(p.encode_line(line)).decode())
            """);
        var got = lines.Select(l => l.Split(' ')).ToDictionary(p => p[0], p => Convert.FromBase64String(p[1]));
        var json = AgentJson.Default;

        var hello = Frame(got["hello"]);
        Assert.Equal(AgentEvents.Hello, hello.Event);
        Assert.Equal(new AgentHello("sbx_1", "tok"), hello.Decode(json.AgentHello));
        Assert.Equal(new AgentHello("sbx_2", "tok2", "OSError: no"), Frame(got["hello_error"]).Decode(json.AgentHello));

        var out_ = Frame(got["out"]);
        Assert.Equal(AgentEvents.Out, out_.Event);
        var o = out_.Decode(json.AgentOutEvent);
        Assert.Equal((7L, 2), (o.Id, o.S));
        Assert.Equal(["a", "é ✓", ""], o.Lines);

        var result = Frame(got["result"]);
        Assert.Equal(AgentEvents.Result, result.Event);
        var r = result.Decode(json.AgentResultEvent);
        Assert.Equal((7L, "[1, 2]", "list", "[1,2]", "json"), (r.Id, r.Repr, r.Kind, r.Data.GetRawText(), r.DataKind));
        Assert.Equal("""{"text/plain":"[1, 2]"}""", r.Mime?.GetRawText());
        var rr = Frame(got["result_repr"]).Decode(json.AgentResultEvent);
        Assert.Equal(("<F>", "repr"), (rr.Data.GetString(), rr.DataKind));
        Assert.Equal("""{"text/plain":"<F>","image/png":"iVBO","application/json":{"a":1}}""", rr.Mime?.GetRawText());

        var display = Frame(got["display"]);
        Assert.Equal(AgentEvents.Display, display.Event);
        var d = display.Decode(json.AgentDisplayEvent);
        Assert.Equal((7L, """{"text/plain":"<Figure>","image/png":"iVBO"}"""), (d.Id, d.Mime?.GetRawText()));

        var error = Frame(got["error"]);
        Assert.Equal(AgentEvents.Error, error.Event);
        Assert.Equal(new AgentErrorEvent(7, "ValueError", "bad", "Traceback …\nValueError: bad\n"), error.Decode(json.AgentErrorEvent));

        var exit = Frame(got["exit"]);
        Assert.Equal(AgentEvents.Exit, exit.Event);
        Assert.Equal(new AgentExitEvent(7, 124, true), exit.Decode(json.AgentExitEvent));

        var fail = Frame(got["fail"]);
        Assert.Equal(AgentEvents.Fail, fail.Event);
        Assert.Equal(new AgentFail(8, AgentErrorCodes.NotFound, "/x: No such file or directory"), fail.Decode(json.AgentFail));
        Assert.Equal(new AgentFail(null, AgentErrorCodes.AgentError, "KeyError: 'op'"), Frame(got["fail_no_id"]).Decode(json.AgentFail));

        Assert.Equal(AgentEvents.Ok, Frame(got["ok"]).Event);
        Assert.Equal(new AgentOk(9), Frame(got["ok"]).Decode(json.AgentOk));
        Assert.Equal(new AgentWriteOk(10, 5), Frame(got["write_ok"]).Decode(json.AgentWriteOk));
        var read = Frame(got["read_ok"]);
        Assert.Equal(new AgentReadOk(11, 3), read.Decode(json.AgentReadOk));
        Assert.Equal("abc"u8.ToArray(), read.Payload);

        var list = Frame(got["list_ok"]).Decode(json.AgentListOk);
        Assert.Equal(12, list.Id);
        Assert.Equal([new AgentFileEntry("a.txt", "file", 3, 1700000000.5), new AgentFileEntry("d", "dir", 4096, 2.0)], list.Entries);

        var fork = Frame(got["fork_ok"]).Decode(json.AgentForkOk);
        Assert.Equal([41, 42], fork.Pids.EnumerateArray().Select(p => p.GetInt32()));

        var h = Frame(got["hibernate_ok"]).Decode(json.AgentHibernateOk);
        Assert.Equal((14L, 99L), (h.Id, h.Bytes));
        Assert.Equal(["x", "f"], h.Saved);
        Assert.Equal("cannot pickle", h.NotSaved!["sock"]);
        Assert.Equal(["json"], h.Modules);
        Assert.Equal(["worker"], h.Threads);
        Assert.Equal(["sleep 100"], h.Processes);

        var restore = Frame(got["restore_ok"]).Decode(json.AgentRestoreOk);
        Assert.Equal((15L, 99L), (restore.Id, restore.Bytes));
        Assert.Equal(["x"], restore.Restored);
        Assert.Equal("gone", restore.NotRestored!["f"]);
        Assert.Equal(["json"], restore.Modules);

        var z = ZygoteJson.Default;
        Assert.Equal(new ZygoteLine(null, true, null, false), Line(got["ready"], z.ZygoteLine));
        Assert.Equal(new ZygoteReady(true, 100), Line(got["ready"], z.ZygoteReady));
        Assert.Equal(101, Line(got["exited"], z.ZygoteLine).Exited);
        Assert.Equal(new ZygoteExited(101, -9), Line(got["exited"], z.ZygoteExited));
        var spawn = Line(got["spawn_ok"], z.ZygoteSpawnReply);
        Assert.Equal(("sbx_1", true, 102, 2.5), (spawn.Id, spawn.Ok, spawn.Pid, spawn.SetupMs));
        Assert.Equal(1.25, spawn.Steps!["mounts"]);
        Assert.Equal(new ZygoteLine(null, null, "sbx_1", true), Line(got["spawn_ok"], z.ZygoteLine));
        Assert.Equal(3.0, Line(got["graft_ok"], z.ZygoteGraftReply).Steps["total"]);
        var zr = Line(got["restore_ok_z"], z.ZygoteRestoreReply);
        Assert.Equal((12L, 1.0), (zr.Entries, zr.Steps["snapshot"]));
        Assert.Equal(new ZygoteFailure("sbx_4", false, "mount overlay: Invalid argument"), Line(got["failure"], z.ZygoteFailure));
    }

    [Fact]
    public void Hostd_encodes_every_request_and_python_decodes_it()
    {
        var json = AgentJson.Default;
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new Utf8JsonWriter(Stream.Null);
        var frames = new MemoryStream();
        void Add<T>(T message, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, byte[]? payload = null)
        {
            frames.Write(AgentFrame.EncodeHead(buffer, writer, message, type, payload?.Length ?? 0).Span);
            if (payload is not null) frames.Write(payload);
        }
        var env = new Dictionary<string, string> { ["A"] = "1", ["É"] = "ü \"q\"" };
        Add(new AgentExecRequest(1, "python", "print('é')\n1 + 1", 30, true, null, null), json.AgentExecRequest);
        Add(new AgentExecRequest(2, "bash", "echo $A", 0.5, false, "/tmp", env), json.AgentExecRequest);
        Add(new AgentSetEnvRequest(3, env), json.AgentSetEnvRequest);
        Add(new AgentWriteRequest(4, "/root/a b.txt"), json.AgentWriteRequest, "hello"u8.ToArray());
        Add(new AgentReadRequest(5, "/etc/hosts", 1 << 20), json.AgentReadRequest);
        Add(new AgentListRequest(6, "/root"), json.AgentListRequest);
        Add(new AgentRemoveRequest(7, "/root/d", true), json.AgentRemoveRequest);
        Add(new AgentForkRequest(8, 3), json.AgentForkRequest);
        Add(new AgentHibernateRequest(9, "/.forkbox-state"), json.AgentHibernateRequest);
        Add(new AgentRestoreRequest(10, "/.forkbox-state"), json.AgentRestoreRequest);

        var z = ZygoteJson.Default;
        var zlines = new StringBuilder();
        zlines.AppendLine(JsonSerializer.Serialize(new ZygoteConfig("/agent", "/data/seccomp.bpf", ["json", "numpy"], 16 << 20), z.ZygoteConfig));
        zlines.AppendLine(JsonSerializer.Serialize(new ZygoteSpawnRequest("sbx_1", "tok", "/run/agent.sock", "/proc/9/ns/user", 100000,
            ["/sys/fs/cgroup/memory/f/cgroup.procs"], "/data/sbx_1/root", 64, true,
            [new ZygoteSpawnLayer("/", "/lower", "/data/sbx_1/upper", "/data/sbx_1/work", [new ZygoteWritableDir("tmp", 1023)])], env), z.ZygoteSpawnRequest));
        zlines.AppendLine(JsonSerializer.Serialize(new ZygoteSpawnRequest("sbx_2", "tok", "/s", "/u", 1, [], "/r", 1, false, [], null), z.ZygoteSpawnRequest));
        zlines.AppendLine(JsonSerializer.Serialize(new ZygoteGraftRequest("fork_1", "copy",
            [new ZygoteGraftChild("sbx_5", "t5", 4242, "/proc/9/ns/user", "/run/agent.sock", 64,
                [new ZygoteGraftLayer("/", "/lower", "/data/p/upper", "/data/sbx_5/upper", "/data/sbx_5/work")])]), z.ZygoteGraftRequest));
        zlines.AppendLine(JsonSerializer.Serialize(new ZygoteRestoreRequest("sbx_3", "reflink", 100000, 165536,
            [new ZygoteRestoreLayer("/saved/0", "/data/sbx_3/upper")]), z.ZygoteRestoreRequest));

        var input = Convert.ToBase64String(frames.ToArray()) + "\n" + Convert.ToBase64String(Encoding.UTF8.GetBytes(zlines.ToString())) + "\n";
        var output = RunPython("""
            import base64, io, json, sys
            from forkbox_agent import protocol as p
            frames_b64, lines_b64 = sys.stdin.read().split("\n")[:2]
            class Bytes:
                def __init__(self, data): self.f = io.BytesIO(data)
                def recv_into(self, view): return self.f.readinto(view)
            reader = p.FrameReader(Bytes(base64.b64decode(frames_b64)))
            env = {"A": "1", "É": 'ü "q"'}
            expected = [
                ({"op": p.OP_EXEC, "id": 1, "lang": "python", "code": "print('é')\n1 + 1", "timeout": 30, "rich": True}, b""),
                ({"op": p.OP_EXEC, "id": 2, "lang": "bash", "code": "echo $A", "timeout": 0.5, "rich": False, "cwd": "/tmp", "env": env}, b""),
                ({"op": p.OP_SETENV, "id": 3, "env": env}, b""),
                ({"op": p.OP_WRITE, "id": 4, "path": "/root/a b.txt"}, b"hello"),
                ({"op": p.OP_READ, "id": 5, "path": "/etc/hosts", "max": 1 << 20}, b""),
                ({"op": p.OP_LIST, "id": 6, "path": "/root"}, b""),
                ({"op": p.OP_REMOVE, "id": 7, "path": "/root/d", "recursive": True}, b""),
                ({"op": p.OP_FORK, "id": 8, "n": 3}, b""),
                ({"op": p.OP_HIBERNATE, "id": 9, "path": "/.forkbox-state"}, b""),
                ({"op": p.OP_RESTORE, "id": 10, "path": "/.forkbox-state"}, b""),
            ]
            problems = []
            for want, want_payload in expected:
                header, payload = reader.read()
                problems += p.check(p.REQUESTS[header["op"]], header, header["op"])
                if (header, payload) != (want, want_payload):
                    problems.append(f"got {header!r} {payload!r}, want {want!r} {want_payload!r}")
            lines = [json.loads(l) for l in base64.b64decode(lines_b64).decode().splitlines()]
            problems += p.check(p.ZYGOTE_CONFIG, lines[0], "config")
            for line in lines[1:]:
                problems += p.check(p.ZYGOTE_REQUESTS[line["op"]], line, line["op"])
            want_lines = [
                {"agent_dir": "/agent", "seccomp": "/data/seccomp.bpf", "preload": ["json", "numpy"], "output_limit": 16 << 20},
                {"op": p.ZYGOTE_SPAWN, "id": "sbx_1", "token": "tok", "agent_socket": "/run/agent.sock", "userns": "/proc/9/ns/user",
                 "uid": 100000, "cgroup_procs": ["/sys/fs/cgroup/memory/f/cgroup.procs"], "root": "/data/sbx_1/root",
                 "tmp_size_mb": 64, "foreground": True,
                 "layers": [{"target": "/", "lower": "/lower", "upper": "/data/sbx_1/upper", "work": "/data/sbx_1/work",
                             "writable": [["tmp", 1023]]}], "env": env},
                {"op": p.ZYGOTE_SPAWN, "id": "sbx_2", "token": "tok", "agent_socket": "/s", "userns": "/u", "uid": 1,
                 "cgroup_procs": [], "root": "/r", "tmp_size_mb": 1, "foreground": False, "layers": []},
                {"op": p.ZYGOTE_GRAFT, "id": "fork_1", "strategy": "copy", "children": [
                    {"id": "sbx_5", "token": "t5", "pid": 4242, "userns": "/proc/9/ns/user", "agent_socket": "/run/agent.sock",
                     "tmp_size_mb": 64, "layers": [{"target": "/", "lower": "/lower", "src_upper": "/data/p/upper",
                                                   "upper": "/data/sbx_5/upper", "work": "/data/sbx_5/work"}]}]},
                {"op": p.ZYGOTE_RESTORE, "id": "sbx_3", "strategy": "reflink", "uid_from": 100000, "uid_to": 165536,
                 "layers": [{"src": "/saved/0", "dst": "/data/sbx_3/upper"}]},
            ]
            for got, want in zip(lines, want_lines):
                if got != want:
                    problems.append(f"got {got!r}, want {want!r}")
            print("\n".join(problems) if problems else "ok")
            """, input);
        Assert.Equal(["ok"], output);
    }

    [Fact]
    public void The_ops_and_events_are_the_ones_protocol_py_names()
    {
        var lines = RunPython("""
            from forkbox_agent import protocol as p
            print(" ".join(v for k, v in vars(p).items() if k.startswith("OP_")))
            print(" ".join(v for k, v in vars(p).items() if k.startswith("EV_")))
            print(" ".join(v for k, v in vars(p).items() if k.startswith("ZYGOTE_") and isinstance(v, str)))
            print(" ".join(sorted(p.REQUESTS)))
            """);
        Assert.Equal(AgentOps.All, lines[0].Split(' '));
        Assert.Equal(AgentEvents.All, lines[1].Split(' '));
        Assert.Equal(ZygoteOps.All, lines[2].Split(' '));
        Assert.Equal(AgentOps.All.Order(), lines[3].Split(' '));
    }

    private static AgentMessage Frame(byte[] bytes) =>
        new AgentFrameReader(new MemoryStream(bytes)).ReadMessageAsync(1 << 20, default).AsTask().GetAwaiter().GetResult();

    private static T Line<T>(byte[] line, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        Assert.Equal((byte)'\n', line[^1]);
        return JsonSerializer.Deserialize(line.AsSpan(0, line.Length - 1), type)!;
    }

    /// <summary>Runs <paramref name="script"/> with the agent's package on the path; its stdout's lines.</summary>
    internal static string[] RunPython(string script, string? stdin = null)
    {
        var psi = new ProcessStartInfo(Python, ["-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])", AgentFiles.PythonPath, script])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(false),
        };
        using var process = Process.Start(psi)!;
        process.StandardInput.Write(stdin ?? "");
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"python failed: {stderr.Result}");
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
