"""AsyncSandbox against a real server: the same calls, awaited."""

from __future__ import annotations

import asyncio
import threading
import time
import unittest
from typing import List

from forkbox_server import module_server

from forkbox import AsyncSandbox, NotFoundError

setUpModule, tearDownModule, url = module_server("async")


class AsyncFlow(unittest.TestCase):
    def test_create_run_files_fork_merge_and_close(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url(), memory_mb=256) as sb:
                self.assertTrue(sb.id.startswith("sbx_"))
                self.assertEqual(sb.info["limits"]["memory_mb"], 256)
                self.assertIn("AsyncSandbox", repr(sb))
                await sb.run_code("x = 41")
                lines: List[str] = []
                r = await sb.run_code("print(x + 1)\nx", on_stdout=lines.append)
                self.assertEqual((r.stdout, r.result, lines), ("42", 41, ["42"]))
                self.assertEqual((await sb.exec("echo hi; exit 2")).exit_code, 2)
                await sb.upload("/root/a.txt", "async")
                self.assertEqual(await sb.download("/root/a.txt"), b"async")
                self.assertEqual([e.name for e in await sb.list()], ["a.txt"])
                await sb.remove("/root/a.txt")
                self.assertEqual(await sb.list("/root"), [])
                self.assertEqual((await sb.refresh())["state"], "ready")
                other = await AsyncSandbox.connect(sb.id, host=url())
                self.assertEqual((await other.run_code("x")).result, 41)
                self.assertIn(sb.id, [s.id for s in await AsyncSandbox.list(host=url())])

                kids = await sb.fork(2)
                results = await asyncio.gather(*(k.run_code(f"x = x + {i + 1}\nx") for i, k in enumerate(kids)))
                self.assertEqual([r.result for r in results], [42, 43])
                await kids[1].upload("/root/b.txt", "b")
                self.assertEqual((await sb.diff(kids[1])).added, ["/root/b.txt"])
                await sb.merge_into(kids[1])
                self.assertTrue(kids[1].closed)
                await kids[1].close()
                await kids[0].close()
                self.assertEqual((await sb.run_code("x")).result, 43)
                sid = sb.id
            with self.assertRaises(NotFoundError):
                await AsyncSandbox.connect(sid, host=url())

        asyncio.run(flow())

    def test_calls_do_not_block_the_event_loop_and_callbacks_run_on_a_worker_thread(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url()) as sb:
                ticks = 0
                threads: List[int] = []

                async def ticker() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.05)
                        ticks += 1

                task = asyncio.create_task(ticker())
                r = await sb.run_code("import time\ntime.sleep(0.6)\nprint('done')",
                                      on_stdout=lambda _: threads.append(threading.get_ident()))
                task.cancel()
                self.assertEqual(r.stdout, "done")
                self.assertGreaterEqual(ticks, 5, "the loop kept running while the call was in flight")
                self.assertNotEqual(threads, [threading.get_ident()])

        asyncio.run(flow())

    def test_cancelling_an_await_interrupts_the_cell(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url()) as sb:
                await sb.run_code("kept = 1")
                started = time.monotonic()
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(sb.run_code("import time\ntime.sleep(120)\nkept = 2"), 1)
                r = await sb.run_code("kept")  # waits for the interrupted cell, not for its 120 s
                self.assertLess(time.monotonic() - started, 15)
                self.assertEqual(r.result, 1)

        asyncio.run(flow())

    def test_stream_yields_the_raw_events_as_they_arrive_without_blocking_the_loop(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url()) as sb:
                ticks = 0

                async def ticker() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.05)
                        ticks += 1

                task = asyncio.create_task(ticker())
                seen: List[tuple] = []
                code = "import time\nprint('a', flush=True)\ntime.sleep(0.6)\nprint('b')\n7"
                async for ev in sb.stream(code):
                    seen.append((ev["type"], ev.get("data"), ticks))
                task.cancel()
                self.assertEqual([(t, d) for t, d, _ in seen], [("stdout", "a"), ("stdout", "b"), ("result", 7), ("exit", 0)])
                self.assertGreaterEqual(seen[1][2] - seen[0][2], 5, "'a' came before the sleep, and the loop ran meanwhile")
                r = [ev async for ev in sb.stream("echo $X; exit 3", "bash", env={"X": "bash-env"})]
                self.assertEqual([(e["type"], e["data"]) for e in r], [("stdout", "bash-env"), ("exit", 3)])

                async for _ in sb.stream("for i in range(3): print(i)", rich=False):
                    break  # leaving early closes the stream; the sandbox stays usable
                self.assertEqual((await sb.run_code("print('after')")).stdout, "after")

        asyncio.run(flow())

    def test_spaces_calls(self) -> None:
        async def flow() -> None:
            name = f"async-{time.monotonic_ns()}"
            async with await AsyncSandbox.create(url(), persistent=True, name=name) as space:
                [found] = await AsyncSandbox.list(host=url(), name=name)
                self.assertEqual(found.id, space.id)
                await space.run_code("v = 3")
                self.assertEqual((await space.pause())["state"], "paused")
                self.assertEqual((await space.resume())["state"], "ready")
                self.assertEqual((await space.hibernate())["state"], "hibernated")
                self.assertEqual((await space.run_code("v")).result, 3)

        asyncio.run(flow())


if __name__ == "__main__":
    unittest.main()
