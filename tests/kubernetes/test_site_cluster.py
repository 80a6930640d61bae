"""A working Kubernetes cluster on each topology's shared `site` lab: the lab serves the bundle
built here and site.yml's Kubernetes plays all succeed on fresh nodes. (tests/layers/test_site.py
verifies every layer, the kubernetes row and the cluster column included, and runs site.yml a
second time to see it change nothing.)"""

from __future__ import annotations

import pytest

from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]


def kubernetes_plays(result) -> dict:
    return {layer.name: layer for layer in result.layers if layer.name.startswith("Kubernetes ")}


def test_every_kubernetes_play_succeeds_on_fresh_nodes(site):
    plays = kubernetes_plays(site.first_run)
    assert plays, "site.yml ran no Kubernetes play"
    failed = {name: sorted(play.failed_hosts) for name, play in plays.items() if play.failed_hosts}
    assert failed == {}, "\n".join(map(str, site.first_run.failures))
    k8s_nodes = {n.name for n in site.topology.nodes if n.is_kubernetes_node}
    assert plays["Kubernetes packages: kubelet, kubeadm and kubectl, pinned and held"].hosts == k8s_nodes
