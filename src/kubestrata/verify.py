"""`kubestrata verify`: every layer's testinfra checks against an inventory, as a table of
layer x node, with JUnit XML for CI. The checks live in tests/*/checks and carry one marker per
layer; per-node checks are parametrized by testinfra's host, the others count for "cluster".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from xdist.scheduler import LoadScopeScheduling

from kubestrata.paths import PROJECT_ROOT

LAYERS = ("prepare", "runtime", "cni", "etcd", "lb", "kubernetes")
CHECK_DIRS = ("tests/layers/checks", "tests/etcd/checks", "tests/lb/checks",
              "tests/kubernetes/checks")
CLUSTER = "cluster"
RANK = {"skip": 0, "pass": 1, "fail": 2}
MAX_WORKERS = 8
NODES_VARIABLE = "KUBESTRATA_VERIFY_NODES"


class Collector:
    """A pytest plugin of the controlling process: the worst outcome per (layer, node), from the
    reports of every worker (each report carries its check's layer and node)."""

    def __init__(self):
        self.outcomes: dict[tuple[str, str], str] = {}
        self.failures: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.failures.append(f"collecting {report.nodeid}: {why(report)}")

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and report.outcome == "passed":
            return
        where = dict(report.user_properties)
        key = (where.get("layer", "other"), where.get("node", CLUSTER))
        state = {"passed": "pass", "failed": "fail", "skipped": "skip"}[report.outcome]
        if RANK[state] >= RANK.get(self.outcomes.get(key, "skip"), 0):
            self.outcomes[key] = state
        if state == "fail":
            check = report.nodeid.rsplit("::", 1)[-1].split("[", 1)[0]
            self.failures.append(f"{key[0]} on {key[1]}: {check}: {why(report)}")


def pytest_collection_modifyitems(items):
    """Loaded in every worker (-p kubestrata.verify): each check's reports carry its layer and
    node."""
    for item in items:
        layer = next((m.name for m in item.iter_markers() if m.name in LAYERS), "other")
        host = getattr(getattr(item, "callspec", None), "params", {}).get("_testinfra_host")
        node = host.backend.get_pytest_id().split("://", 1)[-1] if host else CLUSTER
        item.user_properties.extend([("layer", layer), ("node", node)])


def pytest_xdist_make_scheduler(config, log):
    """The controller's scheduler: one work unit per node (and one for the cluster's checks)."""
    return NodeScheduling(config, log)


class NodeScheduling(LoadScopeScheduling):
    """A node's checks go to one worker, in order, sharing that node's fixtures; the cluster's
    checks to one worker, sharing their workload. The node is read from the check's id
    (`test_x[ansible://NODE]` or `test_x[ansible://NODE-PARAM]`), matched against the
    inventory's node names that NODES_VARIABLE lists (names may contain dashes). xdist's own
    `--dist loadgroup` cannot do this under pytest 9.2: it marks groups by renaming node ids,
    which pytest 9.2 no longer reads, so every check became a group of its own."""

    def _split_scope(self, nodeid: str) -> str:
        _, found, rest = nodeid.partition("[ansible://")
        if not found:
            return CLUSTER
        names = os.environ[NODES_VARIABLE].split(",")
        return max((n for n in names if rest.startswith((n + "]", n + "-"))), key=len,
                   default=rest)


def why(report) -> str:
    """The first line of what failed (the assertion or exception), not the whole traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash else report.longreprtext.strip()
    line = (text.splitlines() or ["failed"])[0].strip()
    return line if len(line) <= 200 else line[:200] + " ..."


def control_path_dir(inventory: Path) -> Path | None:
    """The inventory's own directory of SSH master connections (a lab's), if it names one."""
    cluster = (yaml.safe_load(inventory.read_text()) or {}).get("all", {}).get("vars", {})
    directory = cluster.get("ansible_control_path_dir")
    return Path(directory) if directory else None


def ansible_config(directory: Path | None, path: Path) -> Path:
    """The project's ansible.cfg, written to path with the SSH control-socket directory:
    testinfra reads that from the configuration only, and a lab keeps its own."""
    text = (PROJECT_ROOT / "ansible.cfg").read_text()
    if directory:
        text += f"\n[persistent_connection]\ncontrol_path_dir = {directory}\n"
    path.write_text(text)
    return path


def close_connections(directory: Path) -> None:
    """End the SSH master connections the checks opened (they would linger for a minute)."""
    for socket in directory.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "kubestrata-check"],
                       capture_output=True, check=False, timeout=10)


def run(inventory: Path, layers: list[str], junit: Path, nodes: list[str]) -> Collector:
    """The checks of the layers against the inventory of these nodes; junit gets the JUnit
    XML. Each node's checks, and the cluster's, run in a worker process of their own (up to
    MAX_WORKERS at once): they wait on SSH far more than on the CPU. Commands to one node share
    one SSH connection when the inventory names a socket directory (testinfra uses it only if
    it exists)."""
    collector = Collector()
    directory = control_path_dir(inventory)
    if directory:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["ANSIBLE_CONFIG"] = str(ansible_config(directory, junit.with_name("verify-ansible.cfg")))
    # testinfra calls ansible-inventory, which lives next to this Python
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    os.environ[NODES_VARIABLE] = ",".join(nodes)
    args = [*(str(PROJECT_ROOT / d) for d in CHECK_DIRS),
            f"--ansible-inventory={inventory}", "--hosts=ansible://all",
            "-m", " or ".join(layers), f"--junitxml={junit}", "-p", "no:terminal",
            "-p", "kubestrata.verify", "-n", str(min(len(nodes) + 1, MAX_WORKERS)),
            "-o", "addopts=",
            "-p", "no:cacheprovider", "--rootdir", str(PROJECT_ROOT)]
    try:
        code = pytest.main(args, plugins=[collector])
    finally:
        if directory:
            close_connections(directory)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        # An import error, an interrupt or no checks at all: not a verified cluster.
        collector.failures.append(f"the checks did not run to the end (pytest exit "
                                  f"{int(code)}, {code.name})")
    return collector


def report(collector: Collector, layers: list[str], nodes: list[str]) -> list[str]:
    """The table, then one line per failed check."""
    return table(collector, layers, nodes) + [f"FAIL {failure}" for failure in collector.failures]


def table(collector: Collector, layers: list[str], nodes: list[str]) -> list[str]:
    columns = nodes + ([CLUSTER] if any(k[1] == CLUSTER for k in collector.outcomes) else [])
    width = max(len(c) for c in columns) + 2
    lines = [f"{'layer':<12}" + "".join(f"{c:>{width}}" for c in columns)]
    marks = {"pass": "ok", "fail": "FAIL", "skip": "-"}
    for layer in layers:
        lines.append(f"{layer:<12}" + "".join(
            f"{marks[collector.outcomes.get((layer, c), 'skip')]:>{width}}" for c in columns))
    return lines
