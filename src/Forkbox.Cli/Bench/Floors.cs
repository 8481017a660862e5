using System.Diagnostics;
using System.Globalization;

namespace Forkbox.Cli.Bench;

/// <summary>
/// The raw floors `forkbox bench` sets its figures beside, measured in the same run on this host:
/// a pipe round trip to python, fork() of python (bare, zygote-sized, with unshare), and a process run.
/// </summary>
internal static class Floors
{
    public static async Task<int> RunProcess(string file, string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, UseShellExecute = false })!;
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return p.ExitCode;
    }

    /// <summary>Round trip of a line to a python process over pipes: the floor under run_code.</summary>
    public static List<double> RawPipeRoundTrip(string python, int n) =>
        RunPythonSamples(python, $$"""
            import os, sys, time
            r1, w1 = os.pipe(); r2, w2 = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w1)
                while True:
                    d = os.read(r1, 64)
                    if not d: os._exit(0)
                    os.write(w2, d)
            for i in range({{n + 1}}):
                t = time.perf_counter(); os.write(w1, b"x\n"); os.read(r2, 64)
                if i: print((time.perf_counter() - t) * 1000)
            os.close(w1); os.waitpid(pid, 0)
            """);

    /// <summary>
    /// fork() of a python until the child answers on a pipe: the floor under a sandbox's start.
    /// With preload, the process first imports what the default template's zygote imports; with
    /// unshare, the child also unshares mount, network, IPC and UTS namespaces (needs root).
    /// </summary>
    public static List<double> RawFork(string python, int n, bool preload = false, bool unshare = false) =>
        RunPythonSamples(python, $$"""
            import ctypes, gc, os, time
            if {{(preload ? "True" : "False")}}:
                import json, re, subprocess, pathlib, collections, itertools, functools, math, random, datetime, typing, dataclasses, io, shutil, tempfile, textwrap, traceback, selectors, socket, ast
            libc = ctypes.CDLL(None, use_errno=True)
            gc.freeze()
            for i in range({{n + 1}}):
                r, w = os.pipe()
                t = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    if {{(unshare ? "True" : "False")}} and libc.unshare(0x00020000 | 0x40000000 | 0x08000000 | 0x04000000) != 0:
                        os._exit(1)
                    os.write(w, b"1"); os._exit(0)
                ok = os.read(r, 1)
                if i and ok: print((time.perf_counter() - t) * 1000)
                os.waitpid(pid, 0); os.close(r); os.close(w)
            """);

    public static List<double> RunPythonSamples(string python, string script)
    {
        var psi = new ProcessStartInfo(python, ["-c", script]) { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        var samples = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList();
        p.WaitForExit();
        return samples;
    }
}
