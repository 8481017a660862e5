"""Quickstart: a sandbox, a persistent REPL, a shell command, files.

    pip install ./sdk/python
    FORKBOX_HOST=127.0.0.1:7070 python3 sdk/python/examples/quickstart.py
"""

from forkbox import Sandbox

with Sandbox(memory_mb=512) as sb:  # closed at the end of the block, even on an exception
    print("sandbox", sb.id)

    sb.run_code("x = 41")  # globals survive between calls
    r = sb.run_code("print('x + 1 =', x + 1)\nx * 2", on_stdout=lambda line: print("  live:", line))
    print("stdout:", r.stdout, "| result:", r.result, "| exit code:", r.exit_code)

    r = sb.run_code("1 / 0")
    print("error:", r.error.name if r.error else None, "-", r.error.value if r.error else None)

    sh = sb.exec("uname -s && ls / | head -3", timeout=10)
    print("shell:", sh.stdout_lines)

    sb.upload("/root/data.csv", "a,b\n1,2\n3,4\n")
    total = sb.run_code("import csv\nsum(int(row['b']) for row in csv.DictReader(open('/root/data.csv')))")
    print("sum of b:", total.result)
    print("files:", [(e.name, e.size) for e in sb.list("/root")])
    print("read back:", sb.download("/root/data.csv").decode().splitlines())
