"""`kubestrata bench cluster`: per topology, on fresh lab nodes with warm caches, the time
`kubestrata up` takes to a verified cluster (machines, every layer, every check), the time of a
second `up` (which changes nothing), and the memory of each node by role once the cluster runs."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from kubestrata import topology
from kubestrata.lab.lab import Lab

CLI = str(Path(sys.executable).with_name("kubestrata"))


def _up(path: Path) -> tuple[float, bool]:
    started = time.monotonic()
    done = subprocess.run([CLI, "up", str(path)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    return time.monotonic() - started, done.returncode == 0


def main(names: list[str], out=print) -> int:
    out(f"{'topology':<18} {'nodes':>5} {'to verified s':>13} {'re-run s':>8}  memory per node by role (MiB)")
    failed = False
    for name in names:
        spec = yaml.safe_load(topology.resolve(name).read_text())
        spec["name"] = f"bench-{spec['name']}"
        with tempfile.TemporaryDirectory(prefix="kubestrata-bench-") as scratch:
            path = Path(scratch) / f"{spec['name']}.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            lab = Lab(topology.load(str(path)))
            lab.down()
            try:
                first, ok = _up(path)
                again, ok_again = _up(path) if ok else (0.0, False)
                by_role: dict[str, list[float]] = defaultdict(list)
                for row in lab.status():
                    by_role[row.roles].append(row.rss_mib)
            finally:
                lab.down()
        if not (ok and ok_again):
            failed = True
            out(f"{name:<18} failed: run `kubestrata up {name}` to see why")
            continue
        memory = ", ".join(f"{role} {sum(v) / len(v):.0f}" for role, v in by_role.items())
        out(f"{name:<18} {len(lab.topology.nodes):>5} {first:>13.1f} {again:>8.1f}  {memory}")
    return 1 if failed else 0
