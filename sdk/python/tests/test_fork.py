"""fork, merge_into and diff against a real server, and the tree-search flow they make."""

from __future__ import annotations

import unittest
from typing import List

from forkbox_server import module_server

from forkbox import BadRequestError, Diff, NotFoundError, Sandbox

setUpModule, tearDownModule, url = module_server("fork")


class Fork(unittest.TestCase):
    def test_forks_start_from_the_parents_memory_and_files_and_diverge(self) -> None:
        with Sandbox(url()) as parent:
            parent.run_code("x = 10")
            parent.upload("/root/shared.txt", "from the parent")
            children = parent.fork(2)
            try:
                self.assertEqual(len(children), 2)
                self.assertEqual(len({c.id for c in children} | {parent.id}), 3)
                for c in children:
                    self.assertEqual(c.info["forked_from"], parent.id)
                    self.assertEqual(c.run_code("x").result, 10)
                    self.assertEqual(c.download("/root/shared.txt"), b"from the parent")
                children[0].run_code("x = 11")
                self.assertEqual(children[1].run_code("x").result, 10)
                self.assertEqual(parent.run_code("x").result, 10)
                self.assertEqual(sorted(parent.refresh()["children"]), sorted(c.id for c in children))
            finally:
                for c in children:
                    c.close()

    def test_diff_names_added_removed_and_changed_paths(self) -> None:
        with Sandbox(url()) as parent:
            parent.upload("/root/same.txt", "same")
            parent.upload("/root/edit.txt", "before")
            parent.upload("/root/gone.txt", "bye")
            parent.upload("/tmp/scratch.txt", "t")
            [child] = parent.fork()
            with child:
                child.upload("/root/new.txt", "new")
                child.upload("/root/edit.txt", "after")
                child.remove("/root/gone.txt")
                child.remove("/tmp/scratch.txt")
                d = parent.diff(child)
                self.assertIsInstance(d, Diff)
                self.assertEqual(d.added, ["/root/new.txt"])
                self.assertEqual(d.removed, ["/root/gone.txt", "/tmp/scratch.txt"])
                self.assertEqual(d.changed, ["/root/edit.txt"])
                only_root = parent.diff(child.id, paths=["/root"])
                self.assertEqual(only_root.removed, ["/root/gone.txt"])

    def test_merge_into_itself_is_a_bad_request(self) -> None:
        with Sandbox(url()) as sb:
            with self.assertRaises(BadRequestError) as cm:
                sb.merge_into(sb)
            self.assertEqual(cm.exception.status, 400)
            self.assertFalse(sb.closed)

    def test_tree_search_fork_run_merge_the_best_close_the_rest(self) -> None:
        with Sandbox(url()) as parent:
            parent.run_code("import math\nbase = 7")
            children = parent.fork(3)
            scores: List[float] = [c.run_code(f"score = base * {i + 1} + math.sin({i})\nscore").result
                                   for i, c in enumerate(children)]
            best = max(range(3), key=lambda i: scores[i])
            winner = children[best]
            winner.upload("/root/winner.txt", winner.id)

            parent.merge_into(winner)

            self.assertTrue(winner.closed)
            self.assertEqual(parent.run_code("score").result, scores[best])
            self.assertEqual(parent.download("/root/winner.txt").decode(), winner.id)
            with self.assertRaises(NotFoundError):
                Sandbox.connect(winner.id, host=url())
            # The winner's close() does nothing: not even a request.
            sent: List[str] = []
            original = winner.client.request
            winner.client.request = lambda method, path, **kw: sent.append(method) or original(method, path, **kw)  # type: ignore[method-assign]
            try:
                winner.close()
            finally:
                del winner.client.request  # type: ignore[method-assign]
            self.assertEqual(sent, [])
            for c in children:
                if c is not winner:
                    c.close()
                    with self.assertRaises(NotFoundError):
                        Sandbox.connect(c.id, host=url())
            self.assertEqual(parent.run_code("score").result, scores[best])
        with self.assertRaises(NotFoundError):
            Sandbox.connect(parent.id, host=url())


if __name__ == "__main__":
    unittest.main()
