"""Helpers of the node layers' checks (the fixtures every layer's checks share are in
tests/conftest.py)."""

from __future__ import annotations

import json

import pytest

from tests.layers import remote


@pytest.fixture(scope="session")
def k8s_nodes(inventory) -> list[dict]:
    """Variables of every Kubernetes node, in inventory order."""
    names = inventory.get_hosts("k8s_cluster")
    return [inventory.get_variables(name) for name in names]


def runtime_fact(hostvars: dict) -> dict:
    """The runtime layer's local fact on the node: runtime, cri_socket, cgroup_driver."""
    return json.loads(remote.run(hostvars, "cat /etc/ansible/facts.d/kubestrata_runtime.fact").stdout)


def cri_socket(hostvars: dict) -> str:
    return runtime_fact(hostvars)["cri_socket"].removeprefix("unix://")
