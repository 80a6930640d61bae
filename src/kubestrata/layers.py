"""`kubestrata bench layers`: on fresh lab nodes of each topology, how long each layer of
site.yml takes (every layer before the Kubernetes layer, whose packages cannot be had on lab
nodes), and how long the no-op re-run takes and what it changed (nothing, when all is well)."""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

from kubestrata import playbook, topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PLAYBOOK_DIR

SITE = PLAYBOOK_DIR / "site.yml"
LAYERS = ("prepare", "runtime", "cni", "etcd", "lb")
# Lab nodes stand in for an air-gapped site: chrony asks the lab gateway for time.
LAB_VARS = {"prepare_ntp_servers": ["{{ node_network_gateway }}"]}


def seconds_per_layer(result: playbook.Result) -> dict[str, float]:
    """A layer's time is the sum of its plays' times."""
    names = playbook.play_layers(SITE)
    seconds: dict[str, float] = defaultdict(float)
    for play in result.layers:
        seconds[names.get(play.name, play.name)] += play.seconds
    return seconds


def bench(names: list[str], out=print) -> int:
    out(f"{'topology':<18} {'nodes':>5} {'lab up s':>8} "
        + " ".join(f"{layer + ' s':>9}" for layer in LAYERS)
        + f" {'total s':>7} {'no-op s':>7} {'no-op changes':>13}")
    failed = False
    for name in names:
        lab = Lab(topology.load(name, {"name": f"bench-{name}"}))
        lab.down()
        try:
            started = time.monotonic()
            lab.up(log=lambda msg: None)
            up = time.monotonic() - started
            with tempfile.TemporaryDirectory(prefix="kubestrata-bench-") as scratch:
                def apply(run: str) -> tuple[playbook.Result, float]:
                    run_dir = Path(scratch) / run
                    run_dir.mkdir()
                    began = time.monotonic()
                    result = playbook.run(SITE, lab.inventory_path, tags=list(LAYERS),
                                          extravars=LAB_VARS, out=lambda line: None,
                                          run_dir=run_dir)
                    return result, time.monotonic() - began
                first, total = apply("first")
                again, noop = apply("again")
        finally:
            lab.down()
        if not (first.ok and again.ok):
            failed = True
            problems = first.failures + again.failures
            out(f"{name:<18} failed: {problems[0] if problems else 'see the run output'}")
            continue
        seconds = seconds_per_layer(first)
        out(f"{name:<18} {len(lab.topology.nodes):>5} {up:>8.1f} "
            + " ".join(f"{seconds[layer]:>9.1f}" for layer in LAYERS)
            + f" {total:>7.1f} {noop:>7.1f} {again.changes:>13}")
    return 1 if failed else 0
