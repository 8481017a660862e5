"""The SDK against `forkbox edge` in front of a host, as against the host itself."""

from __future__ import annotations

import unittest
from typing import Optional

from forkbox_server import ClusterOnLoopback

from forkbox import HostUnavailableError, NotFoundError, Sandbox

cluster: Optional[ClusterOnLoopback] = None


def setUpModule() -> None:
    global cluster
    cluster = ClusterOnLoopback()


def tearDownModule() -> None:
    if cluster is not None:
        cluster.stop()


class ThroughTheEdge(unittest.TestCase):
    def test_every_verb_works_through_the_edge_and_reaches_the_sandboxs_host(self) -> None:
        url = cluster.url
        with Sandbox(url, persistent=True, name="through-the-edge") as sb:
            self.assertTrue(sb.id.startswith("sbx_py-1_"))
            lines = []
            sb.run_code("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)", on_stdout=lines.append)
            self.assertEqual(lines, ["0", "1", "2"])
            sb.run_code("x = 41")
            sb.upload("/root/a.txt", b"via the edge")
            self.assertEqual(sb.download("/root/a.txt"), b"via the edge")
            [child] = sb.fork(1)
            self.assertTrue(child.id.startswith("sbx_py-1_"))
            child.run_code("x += 1")
            sb.merge_into(child)
            self.assertEqual(sb.run_code("print(x)").stdout.strip(), "42")
            sb.hibernate()
            self.assertEqual(sb.run_code("print(x)").stdout.strip(), "42")
            [found] = Sandbox.list(host=url, name="through-the-edge")
            self.assertEqual(found.id, sb.id)
        with self.assertRaises(NotFoundError):
            Sandbox.connect(sb.id, host=url)

    def test_a_sandbox_on_a_host_out_of_rotation_is_a_host_unavailable_error(self) -> None:
        with self.assertRaises(HostUnavailableError) as cm:
            Sandbox.connect("sbx_gone-1_" + "0" * 32, host=cluster.url)
        self.assertEqual(cm.exception.code, "host_unavailable")


if __name__ == "__main__":
    unittest.main()
