"""Lab harness of the etcd and HA endpoint tests: a topology's lab under a name and node network
of its own, the layers' playbooks run on it with the PKI and backups in the test's directory,
the layer checks, and the lab down again at the end.

Ansible and testinfra share SSH connections through control sockets named after the node's
address; labs of other tests may use the same addresses, so these runs keep their own sockets
(and their own addresses, 10.47.x instead of the topologies' 10.40.x).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from kubestrata import playbook, topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.lab.conftest import leftovers, ssh

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="lab tests need root (network namespaces, mounts)")

CHECKS = [PROJECT_ROOT / "tests" / "etcd" / "checks", PROJECT_ROOT / "tests" / "lb" / "checks"]
LAYERS = Path(__file__).with_name("layers.yml")


def renamed_topology(name: str, directory: Path, prefix: str, **overrides) -> topology.Topology:
    """A built-in topology as PREFIX-NAME on 10.47.x, written to directory, with overrides."""
    text = topology.resolve(name).read_text().replace("10.40.", "10.47.")
    spec = yaml.safe_load(text)
    spec = topology.merge(spec, {"name": f"{prefix}-{spec['name']}", **overrides})
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return topology.load(str(path))


@dataclass
class Cluster:
    lab: Lab
    work: Path
    control_sockets: Path       # short: a socket's path must fit in 108 bytes
    runs: int = field(default=0)

    @property
    def topology(self) -> topology.Topology:
        return self.lab.topology

    @property
    def backups(self) -> Path:
        return self.work / "backups"

    def inventory_with_etcd_members(self, names: list[str]) -> Path:
        """A copy of the lab's inventory whose etcd group is names."""
        inventory = yaml.safe_load(self.lab.inventory_path.read_text())
        inventory["all"]["children"]["etcd"]["hosts"] = dict.fromkeys(names)
        path = self.work / f"hosts-{len(names)}-etcd-members.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    def play(self, name: str | Path, inventory: Path | None = None,
             **extravars) -> playbook.Result:
        """Run playbooks/NAME (or a playbook file) with the test's PKI and backup directories."""
        self.runs += 1
        path = name if isinstance(name, Path) else PLAYBOOK_DIR / name
        run_dir = self.work / "runs" / f"{self.runs:02d}-{path.stem}"
        run_dir.mkdir(parents=True)
        variables = {"kubestrata_pki_dir": str(self.work / "pki"),
                     "etcd_backup_dir": str(self.backups),
                     "ansible_control_path_dir": str(self.control_sockets), **extravars}
        return playbook.run(path, inventory or self.lab.inventory_path,
                            extravars=variables,
                            run_dir=run_dir, out=lambda line: print(line, flush=True))

    def converge(self, **extravars) -> int:
        """The etcd and HA endpoint layers; the number of changes. Fails on a failed run."""
        result = self.play(LAYERS, **extravars)
        assert result.ok, [str(f) for f in result.failures]
        return result.changes

    def checks(self) -> subprocess.CompletedProcess:
        """The etcd and lb layer checks (testinfra) against the lab's inventory."""
        config = self.work / "ansible.cfg"
        sockets = f"\n[persistent_connection]\ncontrol_path_dir = {self.control_sockets}\n"
        config.write_text((PROJECT_ROOT / "ansible.cfg").read_text() + sockets)
        return subprocess.run(
            [sys.executable, "-m", "pytest", *map(str, CHECKS), "--hosts=ansible://all",
             f"--ansible-inventory={self.lab.inventory_path}", "-p", "no:cacheprovider", "-q"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
            env={**os.environ, "ANSIBLE_CONFIG": str(config),
                 "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})

    def ssh(self, node: str, command: str, check: bool = True) -> str:
        return ssh(self.lab, self.topology.node(node), command, check=check)

    def etcdctl(self, node: str, arguments: str, check: bool = True) -> str:
        """etcdctl on an etcd member as its health-check client (the role's etcdctl.env)."""
        return self.ssh(node, f"set -a; . /etc/etcd/etcdctl.env; set +a; etcdctl {arguments}",
                        check=check)


@contextmanager
def lab_cluster(topo: topology.Topology, work: Path):
    """The topology's lab, up for the block and down after it, with nothing left behind."""
    lab = Lab(topo)
    lab.down()
    sockets = Path(tempfile.mkdtemp(prefix="kubestrata-cp-"))
    try:
        lab.up(log=lambda msg: None)
        yield Cluster(lab, work, sockets)
    finally:
        lab.down()
        shutil.rmtree(sockets)
        assert leftovers(lab) == []


def molecule_test(role: str) -> None:
    """`molecule test` of a role's default scenario passes, and its lab is gone afterwards."""
    venv_bin = Path(sys.executable).parent
    result = subprocess.run([str(venv_bin / "molecule"), "test"], cwd=PROJECT_ROOT / "roles" / role,
                            capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    scenario = PROJECT_ROOT / "roles" / role / "molecule" / "default" / "lab" / "topology.yml"
    assert leftovers(Lab(topology.load(str(scenario)))) == []
