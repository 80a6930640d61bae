"""The roles' molecule scenarios. upgrade_preflight runs on this machine; kube_reset and
kube_packages run on the one-node lab of tests/kubernetes/conftest.py, in this order: kube_reset
first, on the fresh node (its idempotence run needs a node without kubeadm), then kube_packages
from the bundle the lab serves (its inventory names it). The other roles of the layer (kubeadm,
pod_network, kube_upgrade) run in site.yml on the shared lab and in test_reset.py."""

from __future__ import annotations

from tests.harness import assert_passed, molecule, needs_root


def test_upgrade_preflight_scenario():
    assert_passed(molecule("upgrade_preflight"))


@needs_root
def test_kube_reset_scenario_keeps_ssh_and_other_rules(one_node_lab):
    assert_passed(molecule("kube_reset",
                           KUBESTRATA_MOLECULE_INVENTORY=str(one_node_lab.inventory)))


@needs_root
def test_kube_packages_scenario_installs_the_labs_bundle(one_node_lab):
    assert_passed(molecule("kube_packages",
                           KUBESTRATA_MOLECULE_INVENTORY=str(one_node_lab.inventory)))
