using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Cgroups;

/// <summary>
/// cgroup v2 has no devices controller: the kernel asks a BPF_PROG_TYPE_CGROUP_DEVICE program
/// attached to the cgroup instead, as runc and crun do. This one allows exactly
/// <see cref="DeviceAllowList.Rules"/> and refuses everything else. The program is built here
/// from the list, instruction by instruction (there is no compiler for it on a host); it stays
/// attached until the cgroup is removed, so nothing else needs cleaning up.
/// </summary>
public static unsafe class CgroupDeviceProgram
{
    // The context (struct bpf_cgroup_dev_ctx): u32 access_type (access << 16 | type), u32 major, u32 minor.
    private const int DevBlock = 1, DevChar = 2;
    private const int AccMknod = 1, AccRead = 2, AccWrite = 4;

    // Opcodes (linux/bpf_common.h, linux/bpf.h).
    private const byte LdxMemW = 0x61, Alu32AndK = 0x54, Alu32RshK = 0x74, MovX = 0xbf, MovK = 0xb7, JneK = 0x55, Exit = 0x95;
    private const byte R0 = 0, R1 = 1, Type = 2, Access = 3, Major = 4, Minor = 5, Scratch = 6;

    /// <summary>The program's instructions, 8 bytes each (struct bpf_insn: code, dst and src registers, offset, immediate).</summary>
    private static ulong[] Instructions(IReadOnlyList<DeviceAllowList.Rule> rules)
    {
        var program = new List<ulong>
        {
            Insn(LdxMemW, Type, R1, 0, 0),
            Insn(Alu32AndK, Type, 0, 0, 0xffff),
            Insn(LdxMemW, Access, R1, 0, 0),
            Insn(Alu32RshK, Access, 0, 0, 16),
            Insn(LdxMemW, Major, R1, 4, 0),
            Insn(LdxMemW, Minor, R1, 8, 0),
        };
        foreach (var rule in rules)
        {
            // Each block jumps to its end (the next block) at the first thing that does not match.
            var access = (rule.Access.Contains('m') ? AccMknod : 0) | (rule.Access.Contains('r') ? AccRead : 0) | (rule.Access.Contains('w') ? AccWrite : 0);
            var tests = new List<(byte Code, byte Dst, byte Src, int Imm)>
            {
                (JneK, Type, 0, rule.Type == 'b' ? DevBlock : DevChar),
                (MovX, Scratch, Access, 0),
                (Alu32AndK, Scratch, 0, ~access), // an access the rule does not grant
                (JneK, Scratch, 0, 0),
                (JneK, Major, 0, rule.Major),
            };
            if (rule.Minor >= 0) tests.Add((JneK, Minor, 0, rule.Minor));
            var length = tests.Count + 2;
            for (var i = 0; i < tests.Count; i++)
            {
                var (code, dst, src, imm) = tests[i];
                program.Add(Insn(code, dst, src, code == JneK ? (short)(length - 1 - i) : (short)0, imm));
            }
            program.Add(Insn(MovK, R0, 0, 0, 1));
            program.Add(Insn(Exit, 0, 0, 0, 0));
        }
        program.Add(Insn(MovK, R0, 0, 0, 0));
        program.Add(Insn(Exit, 0, 0, 0, 0));
        return [.. program];
    }

    /// <summary>Loads the allow-list program and attaches it to the cgroup directory <paramref name="cgroupDir"/>.</summary>
    public static void Attach(string cgroupDir)
    {
        var instructions = Instructions(DeviceAllowList.Rules);
        var license = "GPL\0"u8; // no GPL-only helper is called; the kernel wants some string
        int prog;
        fixed (ulong* insns = instructions)
        fixed (byte* lic = license)
        {
            var load = new Bpf.ProgLoadAttr
            {
                ProgType = Bpf.BPF_PROG_TYPE_CGROUP_DEVICE,
                InsnCnt = (uint)instructions.Length,
                Insns = (ulong)insns,
                License = (ulong)lic,
            };
            prog = Bpf.ProgLoad(ref load);
            if (prog < 0) throw new IOException($"cannot load the cgroup device program: {Libc.LastError()}");
        }
        var cgroup = -1;
        try
        {
            cgroup = Libc.OpenDirectory(cgroupDir);
            var attach = new Bpf.ProgAttachAttr
            {
                TargetFd = (uint)cgroup,
                AttachBpfFd = (uint)prog,
                AttachType = Bpf.BPF_CGROUP_DEVICE,
                AttachFlags = Bpf.BPF_F_ALLOW_MULTI,
            };
            if (Bpf.ProgAttach(ref attach) != 0)
                throw new IOException($"cannot attach the device program to {cgroupDir}: {Libc.LastError()}");
        }
        finally
        {
            // The attachment holds the program now; it goes when the cgroup is removed.
            if (cgroup >= 0) Libc.Close(cgroup);
            Libc.Close(prog);
        }
    }

    private static ulong Insn(byte code, byte dst, byte src, short off, int imm) =>
        code | (ulong)(byte)(dst | src << 4) << 8 | (ulong)(ushort)off << 16 | (ulong)(uint)imm << 32;
}
