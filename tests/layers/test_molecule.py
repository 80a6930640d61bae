"""Each role's molecule scenario on lab nodes (tests/layers/molecule/create.yml makes them):
converge, idempotence and verify pass, and destroy leaves nothing behind."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata import topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PROJECT_ROOT
from tests.lab.conftest import leftovers

# cri_o has none: CRI-O cannot be installed here (no route to its package repository).
ROLES = ["distro_packages", "prepare", "containerd", "cni"]


def scenario_lab(role: str) -> Lab:
    """The lab a role's scenario brings up, from the settings in its molecule.yml."""
    env = yaml.safe_load((PROJECT_ROOT / "roles" / role / "molecule/default/molecule.yml")
                         .read_text())["ansible"]["env"]
    overrides = {"name": env["KUBESTRATA_LAB_NAME"]}
    for assignment in env.get("KUBESTRATA_LAB_SET", "").split():
        overrides = topology.merge(overrides, topology.parse_assignment(assignment))
    return Lab(topology.load(env["KUBESTRATA_LAB_TOPOLOGY"], overrides))


@pytest.mark.parametrize("role", ROLES)
def test_molecule_scenario(role):
    venv_bin = Path(sys.executable).parent
    result = subprocess.run([str(venv_bin / "molecule"), "test"], cwd=PROJECT_ROOT / "roles" / role,
                            capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}",
                                 "NO_COLOR": "1"})
    lab = scenario_lab(role)
    try:
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert leftovers(lab) == []
    finally:
        lab.down()
