"""Each role's molecule scenario on lab nodes (tests/layers/molecule/create.yml makes them):
converge, idempotence and verify pass, and destroy leaves nothing behind."""

import pytest
import yaml

from kubestrata import topology
from kubestrata.lab.lab import Lab
from kubestrata.paths import PROJECT_ROOT
from tests.harness import assert_passed, molecule
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
    result = molecule(role)
    lab = scenario_lab(role)
    try:
        assert_passed(result)
        assert leftovers(lab) == []
    finally:
        lab.down()
