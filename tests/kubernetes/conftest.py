"""Helpers of the Kubernetes layer's tests: running its roles against an inventory rendered
from a topology on this machine (ansible_connection=local: the variables of a real run, no node
touched), what the layer leaves on a node, and a one-node lab of their own for the tests that
undo the layer (reset), which must not run on the shared `site` lab."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from kubestrata import inventory, topology
from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.harness import lab_cluster, renamed_topology

HERE = Path(__file__).parent
ROLES = PROJECT_ROOT / "roles"

# What the Kubernetes layer leaves on a node, listed the same way before and after a run.
NODE_STATE = (
    "find /etc/kubernetes /etc/apt/sources.list.d /etc/apt/keyrings /var/cache/kubestrata "
    "-xdev 2>/dev/null | sort; "
    "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' 2>/dev/null | sort; "
    "md5sum /etc/apt/sources.list.d/* /etc/kubernetes/*.conf /etc/kubernetes/manifests/* "
    "2>/dev/null; "
    # services only: the kubelet's pod slices come and go with pods
    "systemctl list-unit-files 'kube*' --type=service --no-legend 2>/dev/null"
)

# On the shared lab of tests/conftest.py (fixture `site`), one topology only: the refusals
# are the same in every topology, and each other topology's lab would cost minutes.
on_all_in_one_site = pytest.mark.parametrize("site", ["all-in-one"], indirect=True)


def node_state(cluster) -> dict[str, str]:
    return {n.name: cluster.ssh(n.name, NODE_STATE, check=False) for n in cluster.topology.nodes}


@pytest.fixture(scope="package")
def one_node_lab(tmp_path_factory):
    """A one-node lab (all-in-one) as a tests.harness.Cluster, its inventory pointing at the
    bundle the lab serves (kube_install_source offline). Its users, in the order pytest runs
    them: the kube_reset scenario (on the fresh node: the scenario's idempotence needs no
    kubeadm there), the kube_packages scenario, then test_reset.py (a cluster, then reset)."""
    work = tmp_path_factory.mktemp("k8s-one-node")
    with lab_cluster(renamed_topology("all-in-one", work, "k8s"), work) as cluster:
        yield cluster


def local_inventory(name: str, directory: Path, overrides: dict | None = None) -> Path:
    """The inventory of a topology, with every host reached as this machine."""
    rendered = inventory.render(topology.load(name, overrides),
                                common={"ansible_connection": "local",
                                        "ansible_python_interpreter": sys.executable})
    return inventory.write(rendered, directory / "hosts.yml")


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def plays(playbook_name: str) -> list[dict]:
    return yaml.safe_load((PLAYBOOK_DIR / playbook_name).read_text())
