"""Lab fixtures: real systemd-nspawn nodes; every lab a test brings up is taken down again."""

import os
from pathlib import Path

import pytest

from kubestrata import topology
from kubestrata.lab import machine, network
from kubestrata.lab.lab import Lab
from kubestrata.shell import run

pytestmark = pytest.mark.lab


def pytest_collection_modifyitems(items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="lab tests need root (network namespaces, mounts)")
        for item in items:
            if "tests/lab/" in str(item.fspath):
                item.add_marker(skip)


def leftovers(lab: Lab) -> list[str]:
    """Anything of the lab still on the host."""
    found = [f"netns {ns}" for ns in network.namespaces(lab.name)]
    found += [f"nspawn {pid}" for pid in machine.nspawn_pids(lab.name).values()]
    prefix = str(lab.dir) + "/"
    with open("/proc/self/mounts") as mounts:
        found += [f"mount {line.split()[1]}" for line in mounts if line.split()[1].startswith(prefix)]
    found += [f"cgroup {h}" for h in machine.cgroup_hierarchies()
              if (h / machine.cgroup_path(lab.name)).exists()]
    if lab.dir.exists():
        found.append(f"state {lab.dir}")
    return found


@pytest.fixture(scope="module", params=topology.NAMES)
def lab(request):
    """A lab of each topology, up for the module's tests, then down with nothing left."""
    lab = Lab(topology.load(request.param))
    lab.down()
    try:
        lab.up(log=lambda msg: None)
        yield lab
    finally:
        lab.down()
    assert leftovers(lab) == []


def ssh(lab: Lab, node, command: str, check=True) -> str:
    """Run a shell command on a node over SSH from the lab namespace; its stdout."""
    return run(["ssh", *lab.ssh_options(), f"root@{node.address}", command],
               netns=lab.namespace, check=check, timeout=120).stdout


def venv_tool(name: str) -> str:
    import sys
    return str(Path(sys.executable).with_name(name))
