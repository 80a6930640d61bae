"""The node layers (playbooks/site.yml: prepare, runtime, cni) on lab nodes, and
`kubestrata bench layers`: how long each layer takes per topology, and the no-op re-run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubestrata import playbook, topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PLAYBOOK_DIR

LAYERS = ("prepare", "runtime", "cni")


def apply(inventory: Path, run_dir: Path, tags=LAYERS, extravars: dict | None = None,
          out=lambda line: None) -> playbook.Result:
    """site.yml with the given layers' tags; the run's events and output go to run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return playbook.run(PLAYBOOK_DIR / "site.yml", inventory, tags=list(tags),
                        extravars=extravars, out=out, run_dir=run_dir)


def bench(names: list[str], out=print) -> int:
    out(f"{'topology':<18} {'nodes':>5} {'lab up s':>8} {'prepare s':>9} {'runtime s':>9} "
        f"{'cni s':>6} {'total s':>7} {'no-op s':>7} {'no-op changes':>13}")
    failed = False
    for name in names:
        lab = Lab(topology.load(name, {"name": f"bench-{name}"}))
        lab.down()
        try:
            started = time.monotonic()
            lab.up(log=lambda msg: None)
            up = time.monotonic() - started
            with tempfile.TemporaryDirectory(prefix="kubestrata-bench-") as scratch:
                inventory = lab.inventory_path
                # The lab has no way out: chrony asks the lab gateway.
                extravars = {"prepare_ntp_servers": [str(lab.topology.gateway)]}
                started = time.monotonic()
                first = apply(inventory, Path(scratch) / "first", extravars=extravars)
                total = time.monotonic() - started
                started = time.monotonic()
                again = apply(inventory, Path(scratch) / "again", extravars=extravars)
                noop = time.monotonic() - started
        finally:
            lab.down()
        if not (first.ok and again.ok):
            failed = True
            problems = first.failures + again.failures
            out(f"{name:<18} failed: {problems[0] if problems else 'see the run output'}")
            continue
        layer_s = [f"{layer.seconds:>9.1f}" for layer in first.layers]
        out(f"{name:<18} {len(lab.topology.nodes):>5} {up:>8.1f} {layer_s[0]} {layer_s[1]} "
            f"{first.layers[2].seconds:>6.1f} {total:>7.1f} {noop:>7.1f} {again.changes:>13}")
    return 1 if failed else 0
