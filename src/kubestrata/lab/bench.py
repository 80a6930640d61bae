"""`kubestrata bench`: lab up times (cold and warm), the no-op re-run, down, and node memory.

Each timing is one `kubestrata lab ...` command run as a user would run it. A cold start uses
an empty cache directory, so it includes building the base rootfs and the package mirror.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubestrata import topology
from kubestrata.lab.lab import Lab

CLI = str(Path(sys.executable).with_name("kubestrata"))


def _timed(args: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    subprocess.run([CLI, "lab", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})
    return time.monotonic() - started


def _cold(name: str) -> float:
    with tempfile.TemporaryDirectory(prefix="kubestrata-bench-") as scratch:
        env = {"KUBESTRATA_CACHE": f"{scratch}/cache", "KUBESTRATA_STATE": f"{scratch}/state"}
        seconds = _timed(["up", name], env)
        _timed(["down", name], env)
        return seconds


def main(names: list[str], cold: bool = False) -> int:
    print(f"{'topology':<18} {'nodes':>5} {'cold up s':>9} {'warm up s':>9} {'re-run s':>8} "
          f"{'down s':>6} {'idle MiB/node':>13}", flush=True)
    for name in names:
        t = topology.load(name)
        lab = Lab(t)
        lab.down()
        cold_s = f"{_cold(name):9.1f}" if cold else f"{'-':>9}"
        warm = _timed(["up", name])
        rerun = _timed(["up", name])
        time.sleep(2)       # let the nodes settle to idle
        rows = lab.status()
        memory = sum(r.rss_mib for r in rows) / len(rows)
        down = _timed(["down", name])
        print(f"{name:<18} {len(t.nodes):>5} {cold_s} {warm:9.1f} {rerun:8.1f} {down:6.1f} "
              f"{memory:13.0f}", flush=True)
    return 0
