from forkbox import Sandbox

with Sandbox(memory_mb=512) as sb:                        # FORKBOX_HOST, else http://127.0.0.1:7070
    sb.run_code("x = 41")                                 # a persistent REPL: globals survive
    r = sb.run_code("print(x + 1)\nx * 2", on_stdout=print)   # prints 42 as it arrives
    assert (r.stdout, r.result, r.exit_code) == ("42", 82, 0)
    sh = sb.exec("ls /", timeout=10)                      # bash; sh.exit_code, sh.stdout_lines
    sb.upload("/root/data.csv", "a,b\n1,2\n")             # bytes, str, or a binary file (streamed)
    assert sb.download("/root/data.csv") == b"a,b\n1,2\n"
    files = sb.list("/root")                              # [FileEntry(name, type, size, mtime)]

    forks = sb.fork(3)                                    # exact copies: memory and files
    scores = [f.run_code(f"x * {i}").result for i, f in enumerate(forks)]
    best = forks[scores.index(max(scores))]
    sb.merge_into(best)                                   # sb's id now answers with best's state
    for f in forks:
        f.close()                                         # best.close() does nothing now

with Sandbox(persistent=True, name="project") as space:  # a Space: see Spaces above
    space.run_code("rows = [1, 2, 3]")
    saved = space.hibernate()                             # saved["saved"], saved["not_restored"]
    back = space.resume()                                 # back["restored"], back["timings_ms"]
    [found] = Sandbox.list(name="project")               # this key's sandbox of that name
    assert found.id == space.id and space.run_code("sum(rows)").result == 6
