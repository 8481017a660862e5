"""Lifetime against a real server: set_timeout moves the expiry, restart gives a fresh interpreter on the same files."""

from __future__ import annotations

import asyncio
import time
import unittest
from datetime import datetime, timezone

from forkbox_server import module_server

from forkbox import AsyncSandbox, BadRequestError, ConflictError, Sandbox

setUpModule, tearDownModule, url = module_server("lifetime")


def _expires(info: dict) -> float:
    return datetime.fromisoformat(info["expires_at"].replace("Z", "+00:00")).timestamp()


class SetTimeout(unittest.TestCase):
    def test_set_timeout_keeps_a_sandbox_alive_past_its_first_timeout(self) -> None:
        with Sandbox(url(), timeout_s=2) as sb:
            before = time.time()
            info = sb.set_timeout(30)
            self.assertAlmostEqual(_expires(info), before + 30, delta=2)
            self.assertEqual(sb.info["expires_at"], info["expires_at"])
            time.sleep(4)
            self.assertEqual(sb.run_code("print(1)").stdout, "1")

    def test_bad_values_are_bad_requests_that_name_the_field(self) -> None:
        with Sandbox(url()) as sb:
            for bad in (0, -1, 10**9):
                with self.assertRaises(BadRequestError) as cm:
                    sb.set_timeout(bad)
                self.assertEqual(cm.exception.status, 400)
                self.assertIn("timeout_s", str(cm.exception))

    def test_a_persistent_sandbox_has_no_timeout(self) -> None:
        with Sandbox(url(), persistent=True) as sb:
            with self.assertRaises(ConflictError) as cm:
                sb.set_timeout(30)
            self.assertIn("never expires", str(cm.exception))

    def test_async_set_timeout(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url(), timeout_s=60) as sb:
                info = await sb.set_timeout(600)
                self.assertGreater(_expires(info), time.time() + 500)
        asyncio.run(flow())


class Restart(unittest.TestCase):
    def test_restart_forgets_variables_and_keeps_files(self) -> None:
        with Sandbox(url()) as sb:
            sb.run_code("x = 1")
            sb.upload("/root/kept.txt", b"kept")
            reply = sb.restart()
            self.assertEqual(reply["state"], "ready")
            self.assertEqual(sb.run_code("x").error.name, "NameError")  # type: ignore[union-attr]
            self.assertEqual(sb.download("/root/kept.txt"), b"kept")

    def test_restart_brings_a_sandbox_killed_out_of_memory_back(self) -> None:
        with Sandbox(url(), memory_mb=256) as sb:
            sb.upload("/root/kept.txt", b"kept")
            r = sb.run_code("hog = b'x' * (1024**3)", timeout=60)
            self.assertEqual(r.error.name, "SandboxDied")  # type: ignore[union-attr]
            self.assertEqual(sb.refresh()["state"], "dead")
            # Its files are still there to read, and resume does not pretend to revive it.
            self.assertEqual(sb.download("/root/kept.txt"), b"kept")
            self.assertIn("kept.txt", [e.name for e in sb.list("/root")])
            with self.assertRaises(ConflictError) as cm:
                sb.resume()
            self.assertEqual(cm.exception.code, "sandbox_dead")
            self.assertEqual(sb.restart()["state"], "ready")
            self.assertEqual(sb.refresh()["state"], "ready")
            self.assertEqual(sb.run_code("print(1)").stdout, "1")
            self.assertEqual(sb.download("/root/kept.txt"), b"kept")

    def test_async_restart(self) -> None:
        async def flow() -> None:
            async with await AsyncSandbox.create(url()) as sb:
                await sb.run_code("y = 2")
                self.assertEqual((await sb.restart())["state"], "ready")
                self.assertEqual((await sb.run_code("'y' in globals()")).result, False)
        asyncio.run(flow())


if __name__ == "__main__":
    unittest.main()
