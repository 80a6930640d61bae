"""playbooks/reset.yml on a lab node: without confirmation it stops having changed nothing;
confirmed with reset_etcd_data it deletes the cluster's objects (kube-apiserver's /registry
prefix) from etcd and nothing else. (kube_reset itself is molecule's kube_reset scenario.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]

ETCDCTL = ("ETCDCTL_API=3 ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 ETCDCTL_CACERT=/etc/etcd/pki/ca.crt "
           "ETCDCTL_CERT=/etc/etcd/pki/healthcheck-client.crt "
           "ETCDCTL_KEY=/etc/etcd/pki/healthcheck-client.key etcdctl")


def test_reset_without_confirmation_stops_having_changed_nothing(one_node_lab):
    # As from a script: stdin is no terminal, so the prompt gets no answer. (ansible-runner
    # gives Ansible a terminal, where the prompt would wait: pass reset_confirmed there.)
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")),
                             "-i", str(one_node_lab.inventory), str(PLAYBOOK_DIR / "reset.yml")],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")})
    assert result.returncode != 0
    assert "Not confirmed; nothing was changed" in result.stdout
    assert re.search(r"node-1\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", result.stdout)


def test_reset_with_etcd_data_deletes_only_the_clusters_objects(one_node_lab):
    assert one_node_lab.play("etcd.yml").ok
    node = one_node_lab.topology.nodes[0].name
    one_node_lab.ssh(node, f"{ETCDCTL} put /registry/pods/default/web x && "
                            f"{ETCDCTL} put /kubestrata-test/keep y")

    result = one_node_lab.play("reset.yml", reset_confirmed=True, reset_etcd_data=True)

    assert result.ok, result.failures
    keys = one_node_lab.ssh(node, f"{ETCDCTL} get --prefix --keys-only / -w json")
    names = {kv["key"] for kv in json.loads(keys).get("kvs", [])}
    assert "L2t1YmVzdHJhdGEtdGVzdC9rZWVw" in names                 # /kubestrata-test/keep
    assert not any(name.startswith("L3JlZ2lzdHJ5") for name in names)  # /registry...
