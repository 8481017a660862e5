#!/usr/bin/env python3
"""End-to-end latency through the Python SDK, against any Forkbox host or edge (public API only).

    python3 scripts/bench.py [--host H] [-n N] [--json FILE]

Measures N iterations of create + run_code("print(1)") + close, and N hot run_code("print(1)")
on one sandbox, each after one discarded warm-up; prints mean, p50, p95 and min in milliseconds
over the raw samples. --json writes the samples and the figures. The host defaults to
FORKBOX_HOST, else http://127.0.0.1:7070; FORKBOX_API_KEY is sent if set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

try:
    import forkbox
except ImportError:  # run from a checkout without `pip install ./sdk/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "python"))
    import forkbox

from forkbox import Sandbox


def measure(n: int, once: Callable[[], None]) -> List[float]:
    """Runs ``once`` 1 + n times; returns the last n durations in milliseconds."""
    once()  # warm-up, discarded: first connection, first cell of a code path
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        once()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: List[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least p% of the samples at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figures(samples: List[float]) -> Dict[str, float]:
    return {
        "mean": statistics.fmean(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "min": min(samples),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="Forkbox host or edge (default: FORKBOX_HOST, else http://127.0.0.1:7070)")
    parser.add_argument("-n", type=int, default=30, help="measured iterations per figure (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write the samples and figures to FILE")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")

    def create_run_close() -> None:
        with Sandbox(args.host) as sb:
            if sb.run_code("print(1)").stdout != "1":
                raise RuntimeError("run_code('print(1)') did not print 1")

    try:
        results: Dict[str, List[float]] = {}
        results["create + run_code + close"] = measure(args.n, create_run_close)
        with Sandbox(args.host) as hot:
            results['run_code("print(1)"), hot'] = measure(args.n, lambda: hot.run_code("print(1)") and None)
    except forkbox.ForkboxError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1

    host = forkbox.client.resolve_host(args.host)
    print(f"host {host}, Python SDK {forkbox.__version__}, Python {platform.python_version()}, "
          f"{args.n} iterations after 1 warm-up, milliseconds")
    width = max(len(name) for name in results)
    print(f"{'figure':<{width}}  {'mean':>8} {'p50':>8} {'p95':>8} {'min':>8}")
    table = {}
    for name, samples in results.items():
        f = figures(samples)
        table[name] = {**f, "samples_ms": samples}
        print(f"{name:<{width}}  {f['mean']:8.2f} {f['p50']:8.2f} {f['p95']:8.2f} {f['min']:8.2f}")

    if args.json:
        with open(args.json, "w") as out:
            json.dump({"host": host, "n": args.n, "sdk": f"python {forkbox.__version__}",
                       "python": platform.python_version(), "figures_ms": table}, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
