"""Spaces against a real server: persistent sandboxes found by name, pause, hibernate, resume."""

from __future__ import annotations

import os
import unittest

from forkbox_server import module_server

from forkbox import BadRequestError, ConflictError, Sandbox

setUpModule, tearDownModule, url = module_server("spaces")


def unique(name: str) -> str:
    return f"{name}-{os.getpid()}-{os.urandom(3).hex()}"


class Spaces(unittest.TestCase):
    def test_a_persistent_sandbox_is_found_by_name_and_its_name_is_taken(self) -> None:
        name = unique("project")
        with Sandbox(url(), persistent=True, name=name, idle_timeout_s=60, hibernate_after_s=600) as space:
            self.assertTrue(space.info["persistent"])
            self.assertEqual(space.info["name"], name)
            self.assertIn(repr(name), repr(space))
            [found] = Sandbox.list(host=url(), name=name)
            self.assertEqual(found.id, space.id)
            self.assertEqual(Sandbox.list(host=url(), name=unique("nobody")), [])
            with self.assertRaises(ConflictError) as cm:
                Sandbox(url(), persistent=True, name=name)
            self.assertEqual((cm.exception.status, cm.exception.code), (409, "name_taken"))
        self.assertEqual(Sandbox.list(host=url(), name=name), [])

    def test_a_name_needs_persistent(self) -> None:
        with self.assertRaises(BadRequestError):
            Sandbox(url(), name=unique("loose"))

    def test_pause_then_any_call_resumes(self) -> None:
        with Sandbox(url(), persistent=True) as space:
            space.run_code("x = 1")
            reply = space.pause()
            self.assertEqual((reply["id"], reply["state"]), (space.id, "paused"))
            self.assertIn("timings_ms", reply)
            self.assertEqual(space.info["state"], "paused")
            self.assertEqual(space.refresh()["state"], "paused")
            self.assertEqual(space.run_code("x + 1").result, 2)
            self.assertEqual(space.refresh()["state"], "ready")

    def test_pause_and_resume_explicitly(self) -> None:
        with Sandbox(url(), persistent=True) as space:
            space.pause()
            reply = space.resume()
            self.assertEqual(reply["state"], "ready")
            self.assertEqual(reply["resumed_from"], "paused")

    def test_hibernate_saves_the_repl_and_resume_restores_it(self) -> None:
        with Sandbox(url(), persistent=True, name=unique("hib")) as space:
            space.run_code("import colorsys\ndata = {'rows': list(range(100))}\ndef total(): return sum(data['rows'])")
            space.upload("/root/notes.txt", "kept on disk")
            saved = space.hibernate()
            self.assertEqual(saved["state"], "hibernated")
            self.assertIn("data", saved["saved"])
            self.assertIn("total", saved["saved"])
            self.assertGreater(saved["bytes"], 0)
            self.assertIn("memory_freed_bytes", saved)
            self.assertEqual(space.refresh()["state"], "hibernated")
            back = space.resume()
            self.assertEqual(back["state"], "ready")
            self.assertEqual(back["resumed_from"], "hibernated")
            self.assertIn("data", back["restored"])
            self.assertIn("colorsys", back["modules"])
            self.assertEqual(space.run_code("total()").result, 4950)
            self.assertEqual(space.download("/root/notes.txt"), b"kept on disk")

    def test_a_call_on_a_hibernated_sandbox_resumes_it(self) -> None:
        with Sandbox(url(), persistent=True) as space:
            space.run_code("y = 'back'")
            space.hibernate()
            self.assertEqual(space.run_code("y").result, "back")

    def test_hibernate_with_live_forks_is_a_conflict(self) -> None:
        with Sandbox(url(), persistent=True) as space:
            [child] = space.fork()
            with child:
                with self.assertRaises(ConflictError) as cm:
                    space.hibernate()
                self.assertEqual(cm.exception.code, "has_forks")


if __name__ == "__main__":
    unittest.main()
