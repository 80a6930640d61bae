"""site.yml on fresh lab nodes of each topology (the shared `site` lab of tests/conftest.py):
every layer before the Kubernetes layer succeeds (the Kubernetes plays: tests/kubernetes/
test_site_cluster.py), a second run of every layer, Kubernetes included, changes nothing on any
host, and `kubestrata verify` passes every layer's checks against the lab inventory: the
kubernetes row `ok` on every Kubernetes node and in the cluster column."""

import re

import pytest

from tests.harness import needs_root, table_row

pytestmark = [pytest.mark.lab, needs_root]

NODE_LAYERS = ["prepare", "runtime", "cni"]
LAYERS_BEFORE_KUBERNETES = NODE_LAYERS + ["etcd", "lb"]
EVERY_LAYER = LAYERS_BEFORE_KUBERNETES + ["kubernetes"]


def output(result) -> str:
    return "".join(p.read_text() for p in result.run_dir.glob("artifacts/*/stdout"))


def failed(result) -> str:
    return "\n".join(map(str, result.failures)) or output(result)[-3000:]


def test_every_layer_before_kubernetes_applies_on_fresh_nodes(site):
    t = site.topology
    layers = {layer.name: layer for layer in site.first_run.layers}
    # How far the Kubernetes layer gets depends on its install source (tests/kubernetes);
    # every layer before it must succeed.
    failed_layers = [name for name, layer in layers.items() if layer.failed_hosts]
    assert all(n.startswith("Kubernetes ") for n in failed_layers), \
        failed(site.first_run)
    everyone = {n.name for n in t.nodes}
    k8s_nodes = {n.name for n in t.nodes if n.is_kubernetes_node}
    assert layers["Prepare the operating system of every node"].hosts == everyone
    assert layers["Install the container runtime on the Kubernetes nodes"].hosts == k8s_nodes
    assert layers["Install the CNI plugins and the pod network on the Kubernetes nodes"].hosts \
        == k8s_nodes
    assert layers["Run the etcd cluster on the etcd members"].hosts == \
        {n.name for n in t.with_role("etcd")}
    # distro_packages says what it installed: the Debian version of each pinned upstream one
    assert re.search(r"containerd installed at 2\.1\.9\+ds1-\S+; runc installed at 1\.3\.6\+ds1-",
                     output(site.first_run))


def test_a_second_run_changes_nothing_on_any_host(site):
    second = site.play("site.yml", tags=EVERY_LAYER)
    assert second.ok, failed(second)
    assert {layer.name: sorted(layer.changed_hosts) for layer in second.layers if layer.changes} \
        == {}


def test_verify_passes_every_layer(site):
    checks = site.verify(EVERY_LAYER)
    assert checks.returncode == 0, checks.stdout[-5000:] + checks.stderr[-2000:]
    nodes = checks.stdout.splitlines()[0].split()[1:]
    assert nodes[:len(site.topology.nodes)] == [n.name for n in site.topology.nodes]
    for layer in EVERY_LAYER:
        assert "FAIL" not in table_row(checks.stdout, layer), checks.stdout
    kubernetes = dict(zip(nodes, table_row(checks.stdout, "kubernetes")))
    assert kubernetes == {**{n.name: "ok" if n.is_kubernetes_node else "-"
                             for n in site.topology.nodes}, "cluster": "ok"}, checks.stdout
    for layer in NODE_LAYERS:
        k8s_columns = [mark for node, mark in zip(site.topology.nodes, table_row(checks.stdout, layer))
                       if layer == "prepare" or node.is_kubernetes_node]
        assert set(k8s_columns) == {"ok"}, checks.stdout


def test_a_pin_no_package_matches_fails_naming_what_is_offered(site):
    if len(site.topology.nodes) > 1:
        pytest.skip("checked once, on the one-node topology")
    result = site.play("site.yml", tags=["runtime"], containerd_version="2.1.99")
    assert not result.ok
    [failure] = result.failures
    assert "No containerd 2.1.99 in this node's apt sources; they offer 2.1.9+ds1-" in failure.message
    assert "Pin one of those" in failure.message
