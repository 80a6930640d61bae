"""Scaling by editing the topology, as a user does it, on the shared labs. Single-master: one more
worker in the topology and `kubestrata up` boots it, runs every layer on it and joins it, Ready;
one fewer and `up` asks first (without --yes it stops, having changed nothing), then drains it,
deletes its Node, resets it and removes the machine. The lab ends as it began (two workers).
Multi-master: one more control plane joins behind the virtual IP, and one fewer is refused."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from kubestrata.lab import network
from tests.harness import VENV_BIN, needs_root, table_row

pytestmark = [pytest.mark.lab, needs_root]


def up_with(site, groups: dict[str, dict], *options: str) -> subprocess.CompletedProcess:
    """`kubestrata up` of the lab's topology with the node groups' fields changed (same name:
    the same lab)."""
    source = Path(site.topology.source)
    spec = yaml.safe_load(source.read_text())
    for group in spec["node_groups"]:
        group.update(groups.get(group["name"], {}))
    scaled = site.work / "scaled"
    scaled.mkdir(exist_ok=True)
    path = scaled / str(len(list(scaled.iterdir()))) / source.name
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run([str(VENV_BIN / "kubestrata"), "up", str(path),
                           "-e", f"@{site.variables_file()}", *options],
                          capture_output=True, text=True, timeout=1800, cwd=site.work)


def nodes_ready(site) -> dict[str, str]:
    listed = json.loads(site.ssh("cp-1", "kubectl --kubeconfig /etc/kubernetes/admin.conf "
                                         "get nodes -o json"))
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                        if c["type"] == "Ready") for n in listed["items"]}


def lab_nodes(site) -> set[str]:
    return {ns.split(".", 1)[1] for ns in network.namespaces(site.lab.name)
            if ns != site.lab.namespace}


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_a_worker_joins_and_leaves_by_editing_the_count(site):
    grown = up_with(site, {"worker": {"count": 3}})
    assert grown.returncode == 0, grown.stdout[-4000:] + grown.stderr[-2000:]
    assert nodes_ready(site) == {"cp-1": "True", "worker-1": "True", "worker-2": "True",
                                 "worker-3": "True"}
    assert table_row(grown.stdout, "kubernetes")[:4] == ["ok"] * 4, grown.stdout

    unconfirmed = up_with(site, {"worker": {"count": 2}})
    assert unconfirmed.returncode == 1
    assert "up would remove worker-3, which the topology no longer has; confirm with --yes" \
        in unconfirmed.stderr
    assert "worker-3" in nodes_ready(site) and "worker-3" in lab_nodes(site)

    shrunk = up_with(site, {"worker": {"count": 2}}, "--yes")
    assert shrunk.returncode == 0, shrunk.stdout[-4000:] + shrunk.stderr[-2000:]
    assert "retire     done" in shrunk.stdout and "worker-3 drained" in shrunk.stdout
    assert nodes_ready(site) == {"cp-1": "True", "worker-1": "True", "worker-2": "True"}
    assert lab_nodes(site) == {"cp-1", "worker-1", "worker-2"}
    assert "worker-3" not in site.inventory.read_text()


@pytest.mark.parametrize("site", ["multi-master"], indirect=True)
def test_a_control_plane_joins_behind_the_virtual_ip_and_none_leaves_by_editing_the_count(site):
    """The last of multi-master's tests: the lab keeps its fourth control plane."""
    workers = [str(node.address) for node in site.topology.with_role("worker")]
    moving = up_with(site, {"cp": {"count": 4}})
    assert moving.returncode == 1
    assert (f"the topology would move worker-1 from {workers[0]} to {workers[1]}"
            in moving.stderr), moving.stderr
    assert f"keep them with node_groups[2].addresses: [{', '.join(workers)}]" in moving.stderr
    assert "cp-4" not in lab_nodes(site)

    grown = up_with(site, {"cp": {"count": 4}, "worker": {"addresses": workers}})
    assert grown.returncode == 0, grown.stdout[-4000:] + grown.stderr[-2000:]
    assert nodes_ready(site) == {"cp-1": "True", "cp-2": "True", "cp-3": "True", "cp-4": "True",
                                 "worker-1": "True", "worker-2": "True"}
    # verify, as up ran it (columns etcd-1, cp-1..4, worker-1..2, the cluster): Kubernetes on six
    # nodes, every control plane's API server ready, every haproxy finding four API servers up
    assert table_row(grown.stdout, "layer") == ["etcd-1", "cp-1", "cp-2", "cp-3", "cp-4",
                                                "worker-1", "worker-2", "cluster"], grown.stdout
    assert table_row(grown.stdout, "kubernetes") == ["-"] + ["ok"] * 7, grown.stdout
    assert table_row(grown.stdout, "lb") == ["-"] + ["ok"] * 4 + ["-", "-", "ok"], grown.stdout
    api_servers = site.ssh("cp-1", "kubectl --kubeconfig /etc/kubernetes/admin.conf get pods "
                                   "--namespace kube-system --selector component=kube-apiserver "
                                   "-o jsonpath='{.items[*].spec.nodeName}'")
    assert sorted(api_servers.split()) == ["cp-1", "cp-2", "cp-3", "cp-4"]

    shrunk = up_with(site, {"worker": {"addresses": workers}}, "--yes")
    assert shrunk.returncode == 1
    assert "the topology no longer has cp-4, which is in" in shrunk.stderr
    assert "up removes workers only" in shrunk.stderr
    assert nodes_ready(site)["cp-4"] == "True" and "cp-4" in lab_nodes(site)
