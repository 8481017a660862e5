"""Tests of confined.py and the walks built on it (storage.py, isolate._prepare_upper): host-root
work on a sandbox's layer never passes through a symlink the sandbox left there.

Run from the repository root as root: /usr/bin/python3 -m unittest discover -s tests/agent -v
"""

import os
import stat
import sys
import tempfile
import unittest

AGENT_PYTHON = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src", "Forkbox.Agent", "python"))
sys.path.insert(0, AGENT_PYTHON)

from forkbox_agent import confined, isolate, storage  # noqa: E402


@unittest.skipUnless(os.geteuid() == 0, "needs root: the walks chown and mknod as the zygote does")
class ConfinedTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="forkbox-confined-")
        self.host = os.path.join(self.dir, "host")
        os.makedirs(os.path.join(self.host, "sub"))
        with open(os.path.join(self.host, "sub", "secret"), "w") as f:
            f.write("host")
        os.chmod(self.host, 0o755)
        self.upper = os.path.join(self.dir, "upper")
        os.makedirs(os.path.join(self.upper, "root"))

    def tearDown(self):
        import shutil
        shutil.rmtree(self.dir)

    def test_a_snapshot_copies_a_symlink_as_a_symlink_and_makes_no_device_node(self):
        os.symlink(self.host, os.path.join(self.upper, "root", "link"))
        os.mknod(os.path.join(self.upper, "root", "kvm"), stat.S_IFCHR | 0o666, os.makedev(10, 232))
        os.mknod(os.path.join(self.upper, "root", "gone"), stat.S_IFCHR, os.makedev(0, 0))
        dst = os.path.join(self.dir, "copy")
        storage.snapshot("copy", self.upper, dst)
        self.assertEqual(os.readlink(os.path.join(dst, "root", "link")), self.host)
        self.assertFalse(os.path.lexists(os.path.join(dst, "root", "kvm")))
        self.assertEqual(os.lstat(os.path.join(dst, "root", "gone")).st_rdev, 0)

    def test_walk_to_replaces_a_symlink_instead_of_following_it(self):
        os.symlink(self.host, os.path.join(self.upper, "tmp"))
        top = confined.open_root(self.upper)
        try:
            fd = confined.walk_to(top, "tmp/sub", create_mode=0o755, replace=True)
            os.fchmod(fd, 0o1777)
            os.close(fd)
        finally:
            os.close(top)
        self.assertTrue(os.path.isdir(os.path.join(self.upper, "tmp")) and not os.path.islink(os.path.join(self.upper, "tmp")))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.host, "sub")).st_mode), 0o755)

    def test_prepare_upper_never_chowns_a_host_directory(self):
        os.symlink(self.host, os.path.join(self.upper, "etc"))
        isolate._prepare_upper({"upper": self.upper, "target": "/", "writable": [("etc", 0o755), ("root", 0o700)]}, 123456)
        st = os.stat(self.host)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o755))
        self.assertEqual(os.lstat(os.path.join(self.upper, "etc")).st_uid, 123456)

    def test_shift_owners_moves_owners_without_following_links(self):
        os.symlink(os.path.join(self.host, "sub", "secret"), os.path.join(self.upper, "root", "link"))
        with open(os.path.join(self.upper, "root", "file"), "w") as f:
            f.write("x")
        for p in (self.upper, os.path.join(self.upper, "root"), os.path.join(self.upper, "root", "file")):
            os.chown(p, 100000, 100000)
        os.chown(os.path.join(self.upper, "root", "link"), 100000, 100000, follow_symlinks=False)
        self.assertEqual(storage.shift_owners(self.upper, 100000, 200000), 4)
        self.assertEqual(os.lstat(os.path.join(self.upper, "root", "link")).st_uid, 200000)
        self.assertEqual(os.stat(os.path.join(self.upper, "root", "file")).st_uid, 200000)
        self.assertEqual(os.stat(os.path.join(self.host, "sub", "secret")).st_uid, 0)


if __name__ == "__main__":
    unittest.main()
