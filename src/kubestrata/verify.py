"""`kubestrata verify`: every layer's testinfra checks against an inventory, as a table of
layer x node, with JUnit XML for CI. The checks live in tests/*/checks and carry one marker per
layer; per-node checks are parametrized by testinfra's host, the others count for "cluster".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata.paths import PROJECT_ROOT

LAYERS = ("prepare", "runtime", "cni", "etcd", "lb", "kubernetes")
CHECK_DIRS = ("tests/layers/checks", "tests/etcd/checks", "tests/lb/checks",
              "tests/kubernetes/checks")
CLUSTER = "cluster"
RANK = {"skip": 0, "pass": 1, "fail": 2}


class Collector:
    """A pytest plugin: the worst outcome per (layer, node)."""

    def __init__(self):
        self.outcomes: dict[tuple[str, str], str] = {}
        self.failures: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.failures.append(f"collecting {report.nodeid}: {why(report)}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        layer = next((m.name for m in item.iter_markers() if m.name in LAYERS), "other")
        host = getattr(getattr(item, "callspec", None), "params", {}).get("_testinfra_host")
        node = host.backend.get_pytest_id().split("://", 1)[-1] if host else CLUSTER
        report.user_properties.extend([("layer", layer), ("node", node)])
        if report.when == "call" or report.outcome != "passed":
            state = {"passed": "pass", "failed": "fail", "skipped": "skip"}[report.outcome]
            key = (layer, node)
            if RANK[state] >= RANK.get(self.outcomes.get(key, "skip"), 0):
                self.outcomes[key] = state
            if state == "fail":
                self.failures.append(f"{layer} on {node}: {item.originalname}: {why(report)}")


def why(report) -> str:
    """The first line of what failed (the assertion or exception), not the whole traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash else report.longreprtext.strip()
    line = (text.splitlines() or ["failed"])[0].strip()
    return line if len(line) <= 200 else line[:200] + " ..."


def ansible_config(inventory: Path, path: Path) -> Path:
    """The project's ansible.cfg, written to path with the inventory's SSH control-socket
    directory: testinfra reads that from the configuration only, and a lab keeps its own."""
    text = (PROJECT_ROOT / "ansible.cfg").read_text()
    cluster = (yaml.safe_load(inventory.read_text()) or {}).get("all", {}).get("vars", {})
    if cluster.get("ansible_control_path_dir"):
        text += f"\n[persistent_connection]\ncontrol_path_dir = {cluster['ansible_control_path_dir']}\n"
    path.write_text(text)
    return path


def run(inventory: Path, layers: list[str], junit: Path) -> Collector:
    """The checks of the layers against the inventory; junit gets the JUnit XML."""
    collector = Collector()
    os.environ["ANSIBLE_CONFIG"] = str(ansible_config(inventory, junit.with_name("verify-ansible.cfg")))
    # testinfra calls ansible-inventory, which lives next to this Python
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    args = [*(str(PROJECT_ROOT / d) for d in CHECK_DIRS),
            f"--ansible-inventory={inventory}", "--hosts=ansible://all",
            "-m", " or ".join(layers), f"--junitxml={junit}", "-p", "no:terminal",
            "-o", "addopts=",
            "-p", "no:cacheprovider", "--rootdir", str(PROJECT_ROOT)]
    code = pytest.main(args, plugins=[collector])
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
