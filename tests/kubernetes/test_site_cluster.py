"""A working Kubernetes cluster on each topology's shared `site` lab: the lab serves the bundle
built here and site.yml's Kubernetes plays all succeed on fresh nodes. (tests/layers/test_site.py
verifies every layer, the kubernetes row and the cluster column included, and runs site.yml a
second time to see it change nothing.) On single-master, one worker is reset and joins again."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import VENV_BIN, needs_root

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


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_one_worker_reset_then_joins_again(site):
    """`kubestrata reset NAME --node worker-2`: drained, its Node deleted, Kubernetes gone from
    it while the cluster and etcd's objects stay; site.yml joins it again, Ready."""
    def node_names() -> list[str]:
        listed = site.ssh("cp-1", "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes "
                                  "-o jsonpath='{.items[*].metadata.name}'")
        return listed.split()

    reset = subprocess.run([str(VENV_BIN / "kubestrata"), "reset", str(site.topology.source),
                            "--node", "worker-2", "--yes"], capture_output=True, text=True,
                           timeout=900)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "node worker-2 reset" in reset.stdout
    assert node_names() == ["cp-1", "worker-1"]
    assert site.ssh("worker-2", "systemctl is-active kubelet", check=False).strip() != "active"
    assert site.ssh("worker-2", "test -e /etc/kubernetes/kubelet.conf || echo gone").strip() == "gone"

    again = site.play("site.yml")
    assert again.ok, again.failures
    ready = site.ssh("cp-1", "kubectl --kubeconfig /etc/kubernetes/admin.conf wait node worker-2 "
                             "--for condition=Ready --timeout 120s", check=False)
    assert "node/worker-2 condition met" in ready, ready
