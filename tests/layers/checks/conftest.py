"""Layer checks: testinfra against any inventory (lab nodes or VMs), one marker per layer.

    pytest tests/layers/checks --hosts=ansible://all \\
        --ansible-inventory=inventories/lab/single-master/hosts.yml -m "prepare or runtime"

Per-host checks run on every host of the inventory and skip the hosts a layer does not touch
(runtime and cni: the k8s_cluster group). Without an inventory nothing runs: the checks must
never probe the machine pytest runs on.
"""

from __future__ import annotations

import json

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from tests.layers import remote

LAYERS = {"prepare": "every node", "runtime": "k8s_cluster", "cni": "k8s_cluster"}


def pytest_configure(config):
    for layer, hosts in LAYERS.items():
        config.addinivalue_line("markers", f"{layer}: checks of the {layer} layer ({hosts})")


def pytest_collection_modifyitems(config, items):
    if config.option.ansible_inventory:
        return
    skip = pytest.mark.skip(reason="layer checks need an inventory: --hosts=ansible://all "
                                   "--ansible-inventory=PATH (tests/layers/test_site.py passes them)")
    for item in items:
        if "tests/layers/checks/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def inventory(request) -> AnsibleRunner:
    return AnsibleRunner.get_runner(request.config.option.ansible_inventory)


@pytest.fixture
def hostvars(host) -> dict:
    """The inventory variables of the host under test."""
    return host.ansible.get_variables()


@pytest.fixture
def k8s_node(hostvars) -> dict:
    """The host's variables; skips hosts outside k8s_cluster (no runtime, no pod network)."""
    if "k8s_cluster" not in hostvars["group_names"]:
        pytest.skip(f"{hostvars['inventory_hostname']} is not a Kubernetes node")
    return hostvars


@pytest.fixture(scope="session")
def k8s_nodes(inventory) -> list[dict]:
    """Variables of every Kubernetes node, in inventory order."""
    names = inventory.get_hosts("k8s_cluster")
    return [inventory.get_variables(name) for name in names]


def runtime_fact(run) -> dict:
    """The runtime layer's local fact (CRI socket, cgroup driver), read with a command runner."""
    return json.loads(run("cat /etc/ansible/facts.d/kubestrata_runtime.fact"))


def cri_socket(hostvars: dict) -> str:
    fact = runtime_fact(lambda cmd: remote.run(hostvars, cmd).stdout)
    return fact["cri_socket"].removeprefix("unix://")
