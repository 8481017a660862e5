"""What a user meets first: `pip install ./sdk/python` offline into a fresh venv, the README's
Python section, the examples and scripts/bench.py, all run against a real server."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, List, Optional

from forkbox_server import REPO, SDK, module_server

SYSTEM_PYTHON = "/usr/bin/python3"
README = os.path.join(REPO, "README.md")
EXAMPLES = os.path.join(SDK, "examples")
BENCH = os.path.join(REPO, "scripts", "bench.py")
SECTION = "## Python SDK (`sdk/python`)"

setUpModule, tearDownModule, url = module_server("packaging")


def env_for_examples() -> Dict[str, str]:
    env = dict(os.environ)
    env["FORKBOX_HOST"] = url()
    env.pop("FORKBOX_API_KEY", None)
    env["PYTHONPATH"] = SDK  # the checkout's SDK, as after `pip install ./sdk/python`
    return env


def run_python(args: List[str], python: str = SYSTEM_PYTHON, timeout: float = 180, cwd: Optional[str] = None,
               env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=cwd or REPO, env=env or env_for_examples(), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def python_section() -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else len(text)]


def python_blocks(markdown: str) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


class Readme(unittest.TestCase):
    def test_the_python_section_sits_right_before_the_csharp_sdk(self) -> None:
        with open(README, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(SECTION + "\n", text)
        after = text[text.index(SECTION):]
        self.assertEqual(re.findall(r"^## .*$", after, flags=re.M)[1], "## C# SDK (`src/Forkbox.Client`)")

    def test_the_readme_shows_examples_readme_python_verbatim_and_it_runs(self) -> None:
        path = os.path.join(EXAMPLES, "readme_python.py")
        with open(path, encoding="utf-8") as f:
            code = f.read()
        self.assertIn(code, python_blocks(python_section()),
                      "README.md's first Python block must be examples/readme_python.py verbatim")
        r = run_python([path])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.strip(), "42")

    def test_every_other_python_block_of_the_section_runs(self) -> None:
        with open(os.path.join(EXAMPLES, "readme_python.py"), encoding="utf-8") as f:
            main = f.read()
        blocks = [b for b in python_blocks(python_section()) if b != main]
        self.assertGreaterEqual(len(blocks), 2)
        for block in blocks:
            with self.subTest(block=block.splitlines()[0]), tempfile.NamedTemporaryFile("w", suffix=".py") as f:
                f.write(block)
                f.flush()
                r = run_python([f.name])
                self.assertEqual(r.returncode, 0, r.stdout)
                # What the block's comments say it prints.
                if "AsyncSandbox" in block:
                    self.assertIn("[0, 1, 4]", r.stdout)
                if "ToolHandler" in block:
                    self.assertIn("'content': 'stdout:\\n42\\nexit code: 0'}", r.stdout)


class Examples(unittest.TestCase):
    def test_every_example_runs(self) -> None:
        paths = sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))
        self.assertGreaterEqual(len(paths), 6)
        for path in paths:
            with self.subTest(example=os.path.basename(path)):
                r = run_python([path])
                self.assertEqual(r.returncode, 0, r.stdout)
                self.assertTrue(r.stdout.strip(), "an example says what it did")
                self.assertNotIn("Traceback", r.stdout)


class Bench(unittest.TestCase):
    def test_bench_prints_its_table_and_writes_json(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "bench.json")
            env = env_for_examples()
            del env["PYTHONPATH"]  # bench.py finds the checkout's SDK itself
            r = run_python([BENCH, "--host", url(), "-n", "3", "--json", out], env=env)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertRegex(r.stdout, r"figure +mean +p50 +p95 +min")
            self.assertRegex(r.stdout, r"create \+ run_code \+ close +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+")
            self.assertRegex(r.stdout, r'run_code\("print\(1\)"\), hot +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+')
            with open(out) as f:
                report = json.load(f)
        self.assertEqual(report["n"], 3)
        for figure in report["figures_ms"].values():
            self.assertEqual(len(figure["samples_ms"]), 3)
            self.assertEqual(figure["min"], min(figure["samples_ms"]))

    def test_bench_against_nothing_fails_with_a_message(self) -> None:
        r = run_python([BENCH, "--host", "127.0.0.1:9", "-n", "1"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("FORKBOX_HOST", r.stdout)


class Install(unittest.TestCase):
    def test_pip_install_into_a_fresh_venv_works_offline_and_the_package_talks_to_the_server(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            venv = os.path.join(tmp, "venv")
            made = subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=300)
            self.assertEqual(made.returncode, 0, "python3 -m venv (Debian: apt-get install python3-venv):\n" + made.stdout)
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            # No index at all: the install must not need the network (it would fail here, not hang).
            env.update({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            # `pip install ./sdk/python` on a copy: the legacy install writes build/ and *.egg-info
            # into the tree it installs from, and the tests leave the checkout as they found it.
            shutil.copytree(SDK, os.path.join(tmp, "sdk", "python"),
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            pip = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "./sdk/python"], cwd=tmp, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
            self.assertEqual(pip.returncode, 0, pip.stdout)
            check = ("import forkbox, os, sys\n"
                     "assert forkbox.__file__.startswith(sys.prefix), forkbox.__file__\n"
                     "assert os.path.exists(os.path.join(os.path.dirname(forkbox.__file__), 'py.typed'))\n"
                     "from forkbox.tools import ToolHandler\n"
                     f"with forkbox.Sandbox({url()!r}) as sb:\n"
                     "    print(forkbox.__version__, sb.run_code('6 * 7').result)\n")
            r = subprocess.run([os.path.join(venv, "bin", "python"), "-c", check], cwd=tmp, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertEqual(r.stdout.strip(), "0.1.0 42")


def python39() -> Optional[str]:
    for candidate in [shutil.which("python3.9"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


class Python39(unittest.TestCase):
    SOURCES = [*glob.glob(os.path.join(SDK, "forkbox", "*.py")), *glob.glob(os.path.join(EXAMPLES, "*.py")), BENCH]

    def test_the_sources_parse_as_python_3_9(self) -> None:
        for path in self.SOURCES:
            with self.subTest(path=os.path.relpath(path, REPO)), open(path, encoding="utf-8") as f:
                ast.parse(f.read(), path, feature_version=(3, 9))

    @unittest.skipUnless(python39(), "no Python 3.9 interpreter here")
    def test_an_actual_python_3_9_runs_the_sdk_and_resolves_its_type_hints(self) -> None:
        python = python39()
        assert python is not None
        check = ("import inspect, typing, forkbox, forkbox.tools\n"
                 "for mod in (forkbox, forkbox.tools):\n"
                 "    for name, obj in vars(mod).items():\n"
                 "        if inspect.isclass(obj) and obj.__module__.startswith('forkbox'):\n"
                 "            typing.get_type_hints(obj)\n"
                 "            for f in vars(obj).values():\n"
                 "                if inspect.isfunction(f): typing.get_type_hints(f)\n")
        r = run_python(["-c", check], python=python)
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run_python([os.path.join(EXAMPLES, "quickstart.py")], python=python)
        self.assertEqual(r.returncode, 0, r.stdout)


if __name__ == "__main__":
    unittest.main()
