"""The Kubernetes layer on a lab node with the offline source (a test bundle served inside the
lab): the install source answers, so the layer goes on to its preflight, which refuses an
etcd 3.4.23 (older than Kubernetes 1.31 relies on) having changed nothing; given the topology's
etcd, which is new enough, it writes the bundle's apt source and stops where this machine cannot
follow, at the Kubernetes packages the test bundle cannot hold."""

from __future__ import annotations

import pytest

from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]


def test_the_layer_passes_an_offline_source_and_refuses_an_old_etcd(one_node_lab):
    for layer in ("prepare.yml", "runtime.yml"):
        assert one_node_lab.play(layer).ok, layer
    assert one_node_lab.play("etcd.yml", etcd_version="3.4.23").ok
    offline = {"kube_install_source": "offline", "kube_offline_url": one_node_lab.bundle_url}

    refused = one_node_lab.play("kubernetes.yml", etcd_version="3.4.23", **offline)

    assert not refused.ok and refused.changes == 0
    assert [f.task for f in refused.failures] == ["Refuse an etcd too old for Kubernetes 1.31.4"]
    assert refused.failures[0].message.startswith("etcd 3.4.23 is older than Kubernetes needs")

    assert one_node_lab.play("etcd.yml").ok
    result = one_node_lab.play("kubernetes.yml", **offline)

    assert [f.task for f in result.failures] == ["Fail when a pin matches no package the apt sources offer"]
    assert "No kubelet 1.31.4 in this node's apt sources" in result.failures[0].message
    node = one_node_lab.topology.nodes[0].name
    source = one_node_lab.ssh(node, "cat /etc/apt/sources.list.d/kubernetes.sources")
    assert f"URIs: {one_node_lab.bundle_url}\nSuites: ./\nTrusted: yes" in source
