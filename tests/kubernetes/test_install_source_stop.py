"""On lab nodes, which have no route out: every layer before the Kubernetes layer runs, then
the Kubernetes layer stops at its install source (pkgs.k8s.io is out of reach) with the message
that names the source, the address tried and the offline option, having changed nothing.

It runs on the shared lab of tests/conftest.py (fixture `site`), after site.yml's first run.
"""

from __future__ import annotations

import json

import pytest

from kubestrata import playbook, topology
from tests.harness import needs_root
from tests.kubernetes.conftest import plays

pytestmark = [pytest.mark.lab, needs_root]

KUBERNETES_PLAYS = [play["name"] for play in plays("kubernetes.yml")]
STOP_TASK = "Stop before anything changes when the install source cannot be reached"

# What the Kubernetes layer would leave on a node, listed the same way before and after it.
NODE_STATE = (
    "find /etc/kubernetes /etc/apt/sources.list.d /etc/apt/keyrings /var/cache/kubestrata "
    "-xdev 2>/dev/null | sort; "
    "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' 2>/dev/null | sort; "
    "md5sum /etc/apt/sources.list.d/* 2>/dev/null; "
    "systemctl list-unit-files 'kube*' --no-legend 2>/dev/null"
)


def failure_messages(result: playbook.Result) -> dict[str, str]:
    """Host -> the whole message of its failed task, from the run's events."""
    messages = {}
    for path in result.run_dir.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text())
        if event.get("event") == "runner_on_failed":
            messages[event["event_data"]["host"]] = event["event_data"]["res"]["msg"]
    return messages


def node_state(site) -> dict[str, str]:
    return {n.name: site.ssh(n.name, NODE_STATE, check=False) for n in site.topology.nodes}


def assert_stopped_at_install_source(t: topology.Topology, result: playbook.Result) -> None:
    """The Kubernetes layer failed at the install source on every Kubernetes node, saying why
    and what to do, and reported no change."""
    k8s_nodes = {n.name for n in t.nodes if n.is_kubernetes_node}
    assert not result.ok
    assert {f.host for f in result.failures} == k8s_nodes, result.failures
    assert {f.task for f in result.failures} == {STOP_TASK}
    minor = ".".join(t.versions["kubernetes"].split(".")[:2])
    for host, message in failure_messages(result).items():
        assert len(message) <= 400, "kubestrata shows 400 characters of a failure"
        for words in (f"install source 'upstream' cannot be reached from {host}",
                      f"tried https://pkgs.k8s.io/core:/stable:/v{minor}/deb/InRelease",
                      "Nothing was changed", "kubestrata bundle", "kube_install_source=offline"):
            assert words in message, message
    ran = [layer for layer in result.layers if layer.name in KUBERNETES_PLAYS]
    assert [layer.name for layer in ran] == KUBERNETES_PLAYS[:1], "only the preflight ran"
    assert all(layer.changes == 0 for layer in ran)


def test_the_kubernetes_layer_stops_at_the_install_source_having_changed_nothing(site):
    # site.yml's first run went through every layer before this one and stopped here.
    assert_stopped_at_install_source(site.topology, site.first_run)
    before = node_state(site)

    again = site.play("site.yml", tags=["kubernetes"])

    assert_stopped_at_install_source(site.topology, again)
    assert node_state(site) == before
    assert not (site.inventory.parent / "admin.conf").exists()
    for node in site.topology.with_role("control_plane"):
        # The etcd layer wrote the files the kubeadm configuration names (the preflight checked).
        site.ssh(node.name, "test -s /etc/etcd/pki/ca.crt && test -s /etc/etcd/pki/apiserver-etcd-client.crt"
                            " && test -s /etc/etcd/pki/apiserver-etcd-client.key")
