"""`kubestrata bench bundle`: what `kubestrata bundle --from-source` costs for a topology's
Kubernetes version: the build of each component, packaging, images, the total, a cache hit,
the bundle's size and the peak memory.

Each figure comes from `kubestrata bundle NAME --from-source` run as a user runs it, with an empty
throwaway cache (under the kubestrata cache, for the room it needs) in KUBESTRATA_CACHE. Go's module
cache and the Debian packages of the images are the shared ones, linked in, so nothing is
downloaded. Go's build cache is the shared one too (a rebuild with a warm Go cache); with --cold
a second run also starts from an empty Go build cache: the real cold figure, and slow (minutes of
every core).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubestrata import gobuild
from kubestrata.paths import CACHE_DIR

CLI = str(Path(sys.executable).with_name("kubestrata"))
SHARED = ("go/mod", "image-debs")            # linked into the throwaway cache as they are
STEP = re.compile(r"^  (\S.*?)\s+(\d+\.\d) s$")      # sourcebundle's timing lines


class BenchError(Exception):
    pass


@dataclass
class Run:
    seconds: float
    output: str
    returncode: int
    peak_mib: int                    # max RSS of the command and every process it ran


@dataclass
class Column:
    title: str
    steps: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    hit: float = 0.0
    size_mib: int = 0
    peak_mib: int = 0


def _run(argv: list[str], env: dict) -> Run:
    """argv with its wall time and the peak RSS of its process tree (wait4's rusage)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    with process.stdout:
        output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(time.monotonic() - started, output, process.returncode, usage.ru_maxrss >> 10)


def _measure(title: str, bundle_args: list[str], shared_go_build: bool) -> Column:
    with tempfile.TemporaryDirectory(prefix="bench-", dir=CACHE_DIR) as scratch:
        cache = Path(scratch)
        for name in (*SHARED, *(("go/build",) if shared_go_build else ())):
            (cache / name).parent.mkdir(parents=True, exist_ok=True)
            (cache / name).symlink_to(CACHE_DIR / name)
        env = {**os.environ, "KUBESTRATA_CACHE": str(cache)}
        argv = [CLI, "bundle", *bundle_args, "--from-source"]
        first = _run(argv, env)
        if first.returncode != 0:
            raise BenchError(f"{title}: `kubestrata bundle` failed:\n{first.output[-3000:]}")
        again = _run(argv, env)
        if again.returncode != 0 or "from the cache" not in again.output:
            raise BenchError(f"{title}: the second run was no cache hit:\n{again.output[-3000:]}")
        bundle = next(p for p in (cache / "bundle").iterdir() if p.is_dir())
        return Column(
            title, steps={m.group(1): float(m.group(2)) for m in map(STEP.match,
                                                                     first.output.splitlines()) if m},
            total=first.seconds, hit=again.seconds, peak_mib=first.peak_mib,
            size_mib=sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) >> 20)


def main(version: str, bundle_args: list[str], cold: bool = False) -> int:
    """bundle_args: the topology and its --set options, as `kubestrata bundle` takes them."""
    print(f"bundle from source: Kubernetes {version} ({bundle_args[0]}), {gobuild.go_version()}, "
        f"{os.cpu_count()} CPUs; Go module cache shared (nothing downloaded)", flush=True)
    columns = []
    try:
        columns.append(_measure("Go cache warm", bundle_args, shared_go_build=True))
        if cold:
            columns.append(_measure("Go cache empty", bundle_args, shared_go_build=False))
    except BenchError as exc:
        print(f"kubestrata: {exc}", file=sys.stderr)
        return 1
    steps = list(dict.fromkeys(step for column in columns for step in column.steps))
    rows = [(step, [f"{c.steps[step]:.1f} s" if step in c.steps else "-" for c in columns])
            for step in steps]
    rows += [("total", [f"{c.total:.1f} s" for c in columns]),
             ("cache hit", [f"{c.hit:.1f} s" for c in columns]),
             ("bundle size", [f"{c.size_mib} MiB" for c in columns]),
             ("peak memory (max RSS)", [f"{c.peak_mib} MiB" for c in columns])]
    print(f"{'':<28}" + "".join(f"{c.title:>16}" for c in columns))
    for label, cells in rows:
        print(f"{label:<28}" + "".join(f"{cell:>16}" for cell in cells))
    return 0
