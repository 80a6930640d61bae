"""Reset on a one-node cluster of its own (not the shared `site` lab, which other tests still
use): site.yml installs Kubernetes; reset.yml without confirmation changes nothing and the
cluster keeps running; `kubestrata reset NAME --yes` stops the kubelet and the control plane,
removes kubeadm's files and deletes the cluster's objects (kube-apiserver's /registry/ keys) from
etcd and nothing else; with no cluster left, `kubestrata upgrade` refuses; site.yml then makes a
new cluster on the same node. (kube_reset against the pod network's leftovers is molecule's
kube_reset scenario.)"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.harness import VENV_BIN, needs_root

pytestmark = [pytest.mark.lab, needs_root]

KEPT_KEYS = ["/kubestrata-test/keep", "/registry-not-the-clusters/keep"]
# What kubeadm init writes for the node and the control plane, and kubeadm reset removes.
KUBEADM_FILES = ["/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf",
                 "/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/pki/ca.crt",
                 "/var/lib/kubelet/config.yaml"]


def etcd_keys(cluster) -> set[str]:
    listed = cluster.etcdctl(cluster.topology.nodes[0].name, "get --prefix --keys-only / -w json")
    return {base64.b64decode(kv["key"]).decode() for kv in json.loads(listed).get("kvs", [])}


def present(cluster, paths: list[str]) -> list[str]:
    node = cluster.topology.nodes[0].name
    listed = cluster.ssh(node, " ".join(f"test -e {p} && echo {p};" for p in paths), check=False)
    return listed.split()


def kubelet_state(cluster) -> str:
    return cluster.ssh(cluster.topology.nodes[0].name, "systemctl is-active kubelet",
                       check=False).strip()


@pytest.fixture(scope="module")
def cluster(one_node_lab):
    """Kubernetes on the lab's node (site.yml, from the bundle the lab serves), and a key of
    etcd's that is not the cluster's."""
    result = one_node_lab.play("site.yml")
    assert result.ok, result.failures
    for key in KEPT_KEYS:
        one_node_lab.etcdctl(one_node_lab.topology.nodes[0].name, f"put {key} y")
    return one_node_lab


@pytest.fixture(scope="module")
def reset(cluster):
    """`kubestrata reset NAME --yes`: the whole cluster."""
    assert any(key.startswith("/registry/") for key in etcd_keys(cluster))
    return subprocess.run([str(VENV_BIN / "kubestrata"), "reset", str(cluster.topology.source),
                           "--yes"], capture_output=True, text=True, timeout=900)


def test_reset_without_confirmation_stops_having_changed_nothing(cluster):
    # As from a script: stdin is no terminal, so the prompt gets no answer. (ansible-runner
    # gives Ansible a terminal, where the prompt would wait: pass reset_confirmed there.)
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")),
                             "-i", str(cluster.inventory), str(PLAYBOOK_DIR / "reset.yml")],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")})
    assert result.returncode != 0
    assert "Not confirmed; nothing was changed" in result.stdout
    assert re.search(r"node-1\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", result.stdout)
    assert kubelet_state(cluster) == "active"
    assert present(cluster, KUBEADM_FILES) == KUBEADM_FILES


def test_reset_stops_the_kubelet_and_removes_kubeadms_files(cluster, reset):
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert re.search(r"^reset\s+done in [\d.]+ s: \d+ changes$", reset.stdout, re.M), reset.stdout
    assert "makes a new cluster" in reset.stdout
    assert kubelet_state(cluster) != "active"
    assert present(cluster, KUBEADM_FILES) == []
    node = cluster.topology.nodes[0].name
    assert cluster.ssh(node, "crictl pods -q").split() == [], "no pod is left"
    # The packages stay, held; only the cluster is gone.
    assert {"kubeadm", "kubectl", "kubelet"} <= set(cluster.ssh(node, "apt-mark showhold").split())


def test_reset_deletes_only_the_clusters_objects_from_etcd(cluster, reset):
    assert reset.returncode == 0, reset.stdout + reset.stderr
    # Restarted, etcd answers from its data directory, not from files it still holds open
    # (kubeadm reset once emptied /var/lib/etcd under a running etcd).
    cluster.ssh(cluster.topology.nodes[0].name, "systemctl restart etcd")
    keys = etcd_keys(cluster)
    assert set(KEPT_KEYS) <= keys
    assert not any(key.startswith("/registry/") for key in keys), sorted(keys)[:5]


def test_upgrade_without_a_cluster_stops_before_changing_anything(cluster, reset):
    result = subprocess.run([str(VENV_BIN / "kubestrata"), "upgrade", str(cluster.topology.source)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 1
    assert "No Kubernetes cluster on node-1 (/etc/kubernetes/admin.conf is missing)" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert re.search(r"^\s+FAILED\s+0/1 hosts\s+no changes .* s  Upgrade preflight: the version-skew",
                     result.stdout, re.M), result.stdout


def test_site_makes_a_new_cluster_on_the_reset_node(cluster, reset):
    again = cluster.play("site.yml")
    assert again.ok, again.failures
    node = cluster.topology.nodes[0].name
    ready = cluster.ssh(node, "kubectl --kubeconfig /etc/kubernetes/admin.conf wait node --all "
                              "--for condition=Ready --timeout 120s", check=False)
    assert f"node/{node} condition met" in ready, ready
