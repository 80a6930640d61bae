"""The suite in parallel (`pytest -n 2`, what `setup.sh test` runs): tests that share a lab run in
one worker, in collection order, and the workers take the heaviest groups first.

A group is:
- the tests on one topology's shared `site` lab (tests/conftest.py), wherever they live:
  `site[TOPOLOGY]`;
- otherwise every test of one directory: the labs of tests/lab are named after the topologies,
  tests/kubernetes shares a package-scoped one-node lab, tests/vm one libvirt host, so the tests
  of a directory never bring up two labs of one name at once.

Each group's time is kept in the kubestrata cache (test-durations.json) when a run ends. The
next run hands out the groups longest first, so no long group starts last while the other worker
idles. A cold cache has no times: the ones measured here and committed (tests/durations.json)
stand in, and a group timed nowhere counts one second per test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

from kubestrata import topology
from kubestrata.paths import CACHE_DIR

DURATIONS = CACHE_DIR / "test-durations.json"
COMMITTED = Path(__file__).with_name("durations.json")


def group(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    directory = path.rpartition("/")[0]
    param = name.partition("[")[2].removesuffix("]")
    if param in topology.NAMES and directory != "tests/lab":
        return f"site[{param}]"
    return directory


def check_site_groups(items) -> None:
    """Every test on a `site` lab is in that lab's group: were one in another group, two
    workers could bring up the same lab at once."""
    for item in items:
        if "site" in getattr(item, "fixturenames", ()):
            wanted = f"site[{item.callspec.params['site']}]"
            if group(item.nodeid) != wanted:
                raise pytest.UsageError(f"{item.nodeid} uses the {wanted} lab but its id puts it "
                                        f"in group {group(item.nodeid)}: give it the site "
                                        "parameter alone, or teach tests/scheduling.py its id")


def recorded() -> dict[str, float]:
    """The groups' times: this machine's, else the committed ones."""
    return {**_read(COMMITTED), **_read(DURATIONS)}


def _read(path: Path) -> dict[str, float]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class LabScheduling(LoadScopeScheduling):
    def __init__(self, config, log=None):
        super().__init__(config, log)
        self.seconds = recorded()

    def _split_scope(self, nodeid: str) -> str:
        return group(nodeid)

    def heaviest(self) -> str:
        return max(self.workqueue, key=lambda g: self.seconds.get(g, len(self.workqueue[g])))

    def _assign_work_unit(self, node) -> None:
        self.workqueue.move_to_end(self.heaviest(), last=False)
        super()._assign_work_unit(node)


class Timing:
    """Adds up the time of each group's tests (setup, call and teardown) and records it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[group(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        """Recorded after a run of the whole suite only: part of a group is not its time."""
        config = session.config
        whole = (config.args_source == pytest.Config.ArgsSource.TESTPATHS
                 and not config.option.keyword and not config.option.markexpr
                 and not config.option.collectonly and not config.option.maxfail)
        if not whole or not self.seconds:
            return
        merged = {**_read(DURATIONS), **{g: round(s, 1) for g, s in self.seconds.items()}}
        DURATIONS.parent.mkdir(parents=True, exist_ok=True)
        scratch = DURATIONS.with_suffix(".new")
        scratch.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
        scratch.replace(DURATIONS)
