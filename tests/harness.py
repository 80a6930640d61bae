"""Lab harness of the layer tests: a topology's lab under a name of its own, the playbooks run on
it through ansible-runner (with the test's PKI and backup directories), the layer checks through `kubestrata verify`, and the lab down again
at the end with nothing left behind.

Each lab keeps its own SSH master connections (the lab inventory's ansible_control_path_dir), so
labs that share node addresses never reach each other's nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
VENV_BIN = Path(sys.executable).parent


def renamed_topology(name: str, directory: Path, prefix: str, **overrides) -> topology.Topology:
    """A built-in topology as PREFIX-NAME, written to directory, with overrides."""
    spec = yaml.safe_load(topology.resolve(name).read_text())
    spec = topology.merge(spec, {"name": f"{prefix}-{spec['name']}", **overrides})
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return topology.load(str(path))


@dataclass
class Cluster:
    lab: Lab
    work: Path
    runs: int = field(default=0)

    @property
    def topology(self) -> topology.Topology:
        return self.lab.topology

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    @property
    def backups(self) -> Path:
        return self.work / "backups"

    def inventory_with_etcd_members(self, names: list[str]) -> Path:
        """A copy of the lab's inventory whose etcd group is names."""
        inventory = yaml.safe_load(self.inventory.read_text())
        inventory["all"]["children"]["etcd"]["hosts"] = dict.fromkeys(names)
        path = self.work / f"hosts-{len(names)}-etcd-members.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    def variables(self) -> dict:
        """The test's PKI and backup directories."""
        return {"kubestrata_pki_dir": str(self.work / "pki"),
                "etcd_backup_dir": str(self.backups)}

    def variables_file(self) -> Path:
        """variables() as a file, for `kubestrata up ... -e @FILE`."""
        path = self.work / "variables.yml"
        path.write_text(yaml.safe_dump(self.variables()))
        return path

    def play(self, name: str | Path, inventory: Path | None = None, tags: list[str] | None = None,
             limit: str | None = None, **extravars) -> playbook.Result:
        """playbooks/NAME (or a playbook file) with the lab settings and the test's PKI and
        backup directories; the run is kept under work/runs/."""
        self.runs += 1
        path = name if isinstance(name, Path) else PLAYBOOK_DIR / name
        run_dir = self.work / "runs" / f"{self.runs:02d}-{path.stem}"
        run_dir.mkdir(parents=True)
        variables = {**self.variables(), **extravars}
        return playbook.run(path, inventory or self.inventory, tags=tags, extravars=variables,
                            limit=limit, run_dir=run_dir, out=lambda line: print(line, flush=True))

    def verify(self, layers: list[str]) -> subprocess.CompletedProcess:
        """`kubestrata verify` of the given layers against the lab's inventory."""
        return subprocess.run(
            [str(VENV_BIN / "kubestrata"), "verify", str(self.topology.source),
             "--layers", ",".join(layers)],
            cwd=self.work, capture_output=True, text=True, timeout=900,
            env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})

    def ssh(self, node: str, command: str, check: bool = True) -> str:
        return ssh(self.lab, self.topology.node(node), command, check=check)

    def etcdctl(self, node: str, arguments: str, check: bool = True) -> str:
        """etcdctl on an etcd member as its health-check client (the role's etcdctl.env)."""
        return self.ssh(node, f"set -a; . /etc/etcd/etcdctl.env; set +a; etcdctl {arguments}",
                        check=check)


def table_row(verify_output: str, layer: str) -> list[str]:
    """The marks of a layer's row in `kubestrata verify`'s table (ok, FAIL or -, one per column)."""
    row = next(line for line in verify_output.splitlines() if line.split()[:1] == [layer])
    return row.split()[1:]


@contextmanager
def lab_cluster(topo: topology.Topology, work: Path):
    """The topology's lab, up for the block and down after it, with nothing left behind."""
    lab = Lab(topo)
    lab.down()
    try:
        lab.up(log=lambda msg: None)
        yield Cluster(lab, work)
    finally:
        lab.down()
        assert leftovers(lab) == []


def ansible_playbook(playbook: Path, inventory_path: Path | str, extravars: dict | None = None,
                     *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook from this venv with the project's ansible.cfg and roles, outside
    ansible-runner (for runs on this machine, connection local)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(PROJECT_ROOT / "roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory_path),
            str(playbook), *args]
    if extravars:
        argv += ["--extra-vars", json.dumps(extravars)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
                          timeout=300)


def molecule(role: str, **env: str) -> subprocess.CompletedProcess:
    """`molecule test` of the role's default scenario, between two resets (molecule would
    otherwise keep state and facts of an earlier run), with env added to the environment."""
    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "molecule"), command], cwd=PROJECT_ROOT / "roles" / role,
                              capture_output=True, text=True, timeout=1200,
                              env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
                                   "NO_COLOR": "1", **env})
    run("reset")
    try:
        return run("test")
    finally:
        run("reset")


def assert_passed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def molecule_test(role: str) -> None:
    """`molecule test` of a role's default scenario passes, and its lab is gone afterwards."""
    assert_passed(molecule(role))
    scenario = PROJECT_ROOT / "roles" / role / "molecule" / "default" / "lab" / "topology.yml"
    assert leftovers(Lab(topology.load(str(scenario)))) == []
