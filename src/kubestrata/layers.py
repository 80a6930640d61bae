"""`kubestrata bench layers`: on fresh lab nodes of each topology, how long each layer of
site.yml takes (every layer before the Kubernetes layer, whose packages cannot be had on lab
nodes) and how long the no-op re-run takes, each beside its raw floor (floor.py).

The floor of a layer is the same end state made by a plain script per node over one SSH
connection, the nodes in parallel, on a second set of fresh nodes: what the layer made is read
from the events of its first run, its files taken from the benchmarked nodes (held in memory
only: they include keys). The floor of the no-op re-run is one script per node that checks all
of it on those converged nodes; it also proves the floor made the same state.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubestrata import floor, playbook, topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PLAYBOOK_DIR

SITE = PLAYBOOK_DIR / "site.yml"
LAYERS = ("prepare", "runtime", "cni", "etcd", "lb")


class BenchFailed(Exception):
    pass


@dataclass
class Figures:
    up: float                       # lab up
    layers: dict[str, float]        # site.yml's seconds per layer
    total: float                    # site.yml, every layer
    noop: float                     # site.yml again
    noop_changes: int
    floors: dict[str, float | None]     # None: the layer made nothing
    noop_floor: float


def seconds_per_layer(result: playbook.Result) -> dict[str, float]:
    """A layer's time is the sum of its plays' times."""
    names = playbook.play_layers(SITE)
    seconds: dict[str, float] = defaultdict(float)
    for play in result.layers:
        seconds[names.get(play.name, play.name)] += play.seconds
    return seconds


def bench(names: list[str], out=print) -> int:
    failed = False
    for name in names:
        lab = Lab(topology.load(name, {"name": f"bench-{name}"}))
        lab.down()
        try:
            with tempfile.TemporaryDirectory(prefix="kubestrata-bench-") as scratch:
                figures = measure(lab, Path(scratch))
        except BenchFailed as exc:
            failed = True
            out(f"{name}: failed: {exc}")
            continue
        finally:
            lab.down()
        report(name, len(lab.topology.nodes), figures, out)
    return 1 if failed else 0


def measure(lab: Lab, scratch: Path) -> Figures:
    """site.yml's layers twice on fresh nodes, then their floors on fresh nodes again."""
    started = time.monotonic()
    lab.up(log=lambda msg: None)
    up = time.monotonic() - started

    def apply(run: str) -> tuple[playbook.Result, float]:
        run_dir = scratch / run
        run_dir.mkdir()
        began = time.monotonic()
        result = playbook.run(SITE, lab.inventory_path, tags=list(LAYERS),
                              out=lambda line: None, run_dir=run_dir)
        if not result.ok:
            raise BenchFailed(f"site.yml ({run} run): "
                              f"{result.failures[0] if result.failures else result.unfinished}")
        return result, time.monotonic() - began

    first, total = apply("first")
    again, noop = apply("again")
    addresses = {str(node.address): node.name for node in lab.topology.nodes}
    made = floor.layer_work(floor.read_events(first.run_dir), playbook.play_layers(SITE),
                            addresses)
    versions, tarballs = capture(lab, made)
    lab.down()
    lab.up(log=lambda msg: None)
    floors = replay(lab, made, versions, tarballs)
    noop_floor = check(lab, made, versions, tarballs)
    return Figures(up, seconds_per_layer(first), total, noop, again.changes, floors, noop_floor)


SCRIPT_TIMEOUT = 600


def ssh(lab: Lab, node: str, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """script run by bash on a lab node, over one SSH connection (as root)."""
    address = lab.topology.node(node).address
    return subprocess.run(["ip", "netns", "exec", lab.namespace, "ssh", *lab.ssh_options(),
                           f"root@{address}", "--", script], input=stdin, capture_output=True,
                          timeout=SCRIPT_TIMEOUT, check=False)


def on_nodes(lab: Lab, jobs: dict[str, tuple[str, bytes]], what: str
             ) -> tuple[float, dict[str, subprocess.CompletedProcess]]:
    """Each node's (script, stdin) at once; the seconds until the last one ended, and the
    results. A script that fails is reported by the end of its stderr (stdout may hold keys)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(len(jobs), 1)) as pool:
        try:
            results = dict(zip(jobs, pool.map(lambda node: ssh(lab, node, *jobs[node]), jobs)))
        except subprocess.TimeoutExpired:
            raise BenchFailed(f"{what}: a script ran past {SCRIPT_TIMEOUT} s") from None
    seconds = time.monotonic() - started
    failed = [f"{node} exited {result.returncode}: "
              f"{' | '.join(result.stderr.decode(errors='replace').splitlines()[-5:])}"
              for node, result in results.items() if result.returncode]
    if failed:
        raise BenchFailed(f"{what}: {'; '.join(failed)}")
    return seconds, results


def capture(lab: Lab, made: dict[str, dict[str, floor.Work]]
            ) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], bytes]]:
    """From the benchmarked nodes: node -> package -> installed version, and (layer, node) ->
    the tarball of the files the layer wrote there."""
    packages: dict[str, set[str]] = defaultdict(set)
    for nodes in made.values():
        for node, work in nodes.items():
            packages[node] |= work.packages
    _, listed = on_nodes(lab, {node: (floor.versions_script(names), b"")
                               for node, names in packages.items() if names},
                         "reading the package versions")
    versions = {node: floor.parse_versions(result.stdout.decode())
                for node, result in listed.items()}
    tarballs = {}
    for layer, nodes in made.items():
        _, taken = on_nodes(lab, {node: (floor.capture_script(work), b"")
                                  for node, work in nodes.items() if work.files},
                            f"capturing the files of the {layer} layer")
        tarballs.update({(layer, node): result.stdout for node, result in taken.items()})
    return versions, tarballs


def replay(lab: Lab, made: dict[str, dict[str, floor.Work]], versions: dict[str, dict[str, str]],
           tarballs: dict[tuple[str, str], bytes]) -> dict[str, float | None]:
    """Each layer's floor, layer after layer: the seconds its scripts took (None: it made
    nothing). A node's package index is refreshed once, with its first packages."""
    seconds: dict[str, float | None] = {}
    indexed: set[str] = set()
    for layer in LAYERS:
        jobs = {}
        for node, work in made.get(layer, {}).items():
            refresh = bool(work.packages) and node not in indexed
            jobs[node] = (floor.replay_script(work, versions.get(node, {}), refresh),
                          tarballs.get((layer, node), b""))
            if work.packages:
                indexed.add(node)
        seconds[layer] = on_nodes(lab, jobs, f"the floor of the {layer} layer")[0] \
            if jobs else None
    return seconds


def check(lab: Lab, made: dict[str, dict[str, floor.Work]], versions: dict[str, dict[str, str]],
          tarballs: dict[tuple[str, str], bytes]) -> float:
    """The no-op floor: the seconds one check script per node takes (they run at once)."""
    works: dict[str, floor.Work] = defaultdict(floor.Work)
    files: dict[str, list[floor.Entry]] = defaultdict(list)
    for layer in LAYERS:
        for node, work in made.get(layer, {}).items():
            works[node].update(work)
            files[node] += floor.entries(tarballs[(layer, node)]) if work.files else []
    jobs = {node: (floor.check_script(work, versions.get(node, {}), files[node]), b"")
            for node, work in works.items()}
    return on_nodes(lab, jobs, "the no-op floor found the state differs")[0]


def report(name: str, nodes: int, figures: Figures, out=print) -> None:
    def row(label: str, seconds: float, floor_s: float | None, note: str = "") -> str:
        if floor_s is None:
            return f"  {label:<10} {seconds:>10.1f} {'-':>8} {'-':>6}{note}"
        return f"  {label:<10} {seconds:>10.1f} {floor_s:>8.1f} {seconds / floor_s:>6.1f}{note}"

    out(f"{name}: {nodes} node{'s' if nodes > 1 else ''}, lab up {figures.up:.1f} s")
    out(f"  {'layer':<10} {'site.yml s':>10} {'floor s':>8} {'ratio':>6}")
    for layer in LAYERS:
        out(row(layer, figures.layers.get(layer, 0.0), figures.floors[layer]))
    out(row("all layers", figures.total, sum(s for s in figures.floors.values() if s)))
    out(row("no-op", figures.noop, figures.noop_floor, f"  ({figures.noop_changes} changes)"))
