"""A working Kubernetes cluster on each topology's shared `site` lab: the lab serves the bundle
built here, site.yml's Kubernetes plays all succeed, `kubestrata verify` shows the kubernetes
row `ok` on every Kubernetes node and in the cluster column (nodes Ready, system pods, a
Service by DNS name, a NodePort, pods across nodes: tests/kubernetes/checks), and a second run
of the layer changes nothing."""

from __future__ import annotations

import pytest

from tests.harness import needs_root, table_row

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


def test_verify_shows_the_kubernetes_row_ok_on_every_node_and_the_cluster(site):
    checks = site.verify(["kubernetes"])
    assert checks.returncode == 0, checks.stdout[-5000:] + checks.stderr[-2000:]
    columns = checks.stdout.splitlines()[0].split()[1:]
    marks = dict(zip(columns, table_row(checks.stdout, "kubernetes")))
    expected = {n.name: "ok" if n.is_kubernetes_node else "-" for n in site.topology.nodes}
    assert marks == {**expected, "cluster": "ok"}, checks.stdout


def test_a_second_run_of_the_kubernetes_layer_changes_nothing(site):
    again = site.play("site.yml", tags=["kubernetes"])
    assert again.ok, "\n".join(map(str, again.failures))
    assert {layer.name: sorted(layer.changed_hosts) for layer in again.layers if layer.changes} == {}
