"""A real `forkbox serve` for the SDK's tests: the built CLI on a free loopback port, with its own
data directory. Each test module starts one in setUpModule and stops it in tearDownModule.

Needs root (the server makes namespaces and cgroups) and the built solution
(`dotnet build Forkbox.slnx`; scripts/setup.sh does it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Callable, List, Optional, Tuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SDK = os.path.join(REPO, "sdk", "python")
CLI_DLL = os.path.join(REPO, "src", "Forkbox.Cli", "bin", "Debug", "net10.0", "forkbox.dll")

# The SDK under test is the one in this checkout, not one installed elsewhere.
if SDK not in sys.path:
    sys.path.insert(0, SDK)

_MAX_SANDBOXES = 24
_started = 0


class ForkboxServer:
    """One server process. ``url`` is its base address; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, name: str, extra_args: Tuple[str, ...] = ()) -> None:
        global _started
        if not os.path.exists(CLI_DLL):
            raise RuntimeError(f"{CLI_DLL} is missing: build first (dotnet build Forkbox.slnx, or scripts/setup.sh)")
        if os.geteuid() != 0:
            raise RuntimeError("forkbox serve needs root (namespaces, cgroups, mounts): run the tests as root")
        self.data_dir = tempfile.mkdtemp(prefix=f"forkbox-pysdk-{name}-")
        self.log_path = self.data_dir + ".log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        # A uid range of its own (sandbox slot i maps root to UidBase + i * 65536), away from the C#
        # tests' ranges and different per process and per server of this process.
        slot = (os.getpid() * 7 + _started) % 32
        _started += 1
        env.update({
            "FORKBOX_POOLSIZE": "2",
            "FORKBOX_MAXSANDBOXES": str(_MAX_SANDBOXES),
            "FORKBOX_UIDBASE": str(3_500_000_000 + slot * _MAX_SANDBOXES * 65_536),
        })
        env.pop("FORKBOX_HOST", None)
        env.pop("FORKBOX_API_KEY", None)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            ["dotnet", CLI_DLL, "serve", "--data-dir", os.path.join(self.data_dir, "data"),
             "--listen", f"127.0.0.1:{self.port}", *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_healthy(90)
        except BaseException:
            try:
                self.stop()
            except RuntimeError:
                pass  # the start-up error, with the server's output, is the one to report
            raise

    def _wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"forkbox serve exited with {self.process.returncode} at start-up:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/v1/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"forkbox serve did not answer /v1/healthz within {seconds} s:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What the server printed so far (its log)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, then wait for a clean exit; the data directory goes once the server is gone.
        Raises, with the server's output, if it did not exit with 0."""
        code: Optional[int] = None
        killed = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(10)
                killed = True
        else:
            code = self.process.returncode
        output = self.output()
        self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        if killed:
            raise RuntimeError(f"forkbox serve did not stop within {timeout} s of SIGTERM and was killed:\n{output}")
        if code != 0:
            raise RuntimeError(f"forkbox serve exited with {code} after SIGTERM:\n{output}")


class ClusterOnLoopback:
    """A real redis-server, one host that joins it (host id ``py-1``, region ``py``) and a
    ``forkbox edge`` in front: the SDK must work against an edge as against a host."""

    def __init__(self) -> None:
        self.redis_port = _free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.host: Optional[ForkboxServer] = None
        self.edge: Optional[subprocess.Popen] = None
        try:
            self.host = ForkboxServer("edge-host", ("--join", f"127.0.0.1:{self.redis_port}", "--host-id", "py-1", "--region", "py"))
            self.edge_port = _free_port()
            self.url = f"http://127.0.0.1:{self.edge_port}"
            self.edge_log = tempfile.TemporaryFile()
            self.edge = subprocess.Popen(
                ["dotnet", CLI_DLL, "edge", "--redis", f"127.0.0.1:{self.redis_port}", "--listen", f"127.0.0.1:{self.edge_port}"],
                stdout=self.edge_log, stderr=subprocess.STDOUT, start_new_session=True)
            # In rotation once the edge's capacity lists the host.
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(self.url + "/v1/capacity", timeout=2) as r:
                        if b'"py-1"' in r.read():
                            break
                except OSError:
                    pass
                if self.edge.poll() is not None or time.monotonic() > deadline:
                    self.edge_log.seek(0)
                    raise RuntimeError("forkbox edge did not route to its host:\n" + self.edge_log.read().decode("utf-8", "replace"))
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.edge is not None and self.edge.poll() is None:
            self.edge.send_signal(signal.SIGTERM)
            self.edge.wait(30)
        try:
            if self.host is not None:
                self.host.stop()
        finally:
            self.redis.kill()
            self.redis.wait(10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def module_server(name: str) -> Tuple[Callable[[], None], Callable[[], None], Callable[[], str]]:
    """A server for one test module, as the hooks unittest looks for and the server's URL:
    ``setUpModule, tearDownModule, url = module_server("fork")``."""
    servers: List[ForkboxServer] = []

    def set_up() -> None:
        servers.append(ForkboxServer(name))

    def tear_down() -> None:
        servers.pop().stop()

    def url() -> str:
        return servers[-1].url

    return set_up, tear_down, url
