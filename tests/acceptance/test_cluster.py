"""Acceptance, opt-in: on machines that reach pkgs.k8s.io and the registries, every layer runs
(twice: the second run changes nothing), then the cluster is checked end to end: every node
Ready, a pod on every worker, pod-to-pod traffic across nodes, a Service answering through
kube-proxy, cluster DNS, and the layers' testinfra checks.

    KUBESTRATA_ACCEPTANCE=1 KUBESTRATA_ACCEPTANCE_INVENTORY=inventories/libvirt/single-master/hosts.yml \\
        .venv/bin/pytest tests/acceptance -v

The machines come from anywhere (`kubestrata up NAME --provider libvirt`, or hosts of your own
with an inventory written by kubestrata's renderer). Lab nodes do not qualify: they have no
route out by design.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from kubestrata import playbook, verify
from kubestrata.paths import PLAYBOOK_DIR, PROJECT_ROOT
from tests.layers import remote

pytestmark = pytest.mark.skipif(
    os.environ.get("KUBESTRATA_ACCEPTANCE") != "1",
    reason="acceptance is opt-in (KUBESTRATA_ACCEPTANCE=1 and KUBESTRATA_ACCEPTANCE_INVENTORY=PATH): "
           "it needs machines that reach pkgs.k8s.io and registry.k8s.io, which this one cannot")

NAMESPACE = "kubestrata-acceptance"
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
WORKLOAD = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: netexec, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: netexec}}}}
  template:
    metadata: {{labels: {{app: netexec}}}}
    spec:
      containers:
        - name: netexec
          image: {IMAGE}
          args: [netexec, --http-port=8080]
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: netexec, namespace: {NAMESPACE}}}
spec:
  selector: {{app: netexec}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


class Cluster:
    def __init__(self, inventory_path: Path):
        self.inventory_path = inventory_path
        self.inventory = AnsibleRunner.get_runner(str(inventory_path))
        first = self.inventory.get_hosts("kube_control_plane")[0]
        self.first = self.inventory.get_variables(first)

    def nodes(self, group: str) -> list[dict]:
        return [self.inventory.get_variables(h) for h in self.inventory.get_hosts(group)]

    def kubectl(self, args: str, stdin: str | None = None) -> str:
        command = f"kubectl --kubeconfig /etc/kubernetes/admin.conf {args}"
        result = subprocess.run([*remote.ssh_argv(self.first), command], input=stdin,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout

    def dial(self, pod: str, host: str, port: int) -> dict:
        """netexec in pod dials host:port over HTTP (asks for its hostname); its answer."""
        return json.loads(self.kubectl(
            f"get --raw '/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8080/proxy/dial"
            f"?request=hostname&protocol=http&host={host}&port={port}&tries=1'"))


def run_site(inventory_path: Path) -> playbook.Result:
    return playbook.run(PLAYBOOK_DIR / "site.yml", inventory_path)


@pytest.fixture(scope="module")
def cluster():
    path = os.environ.get("KUBESTRATA_ACCEPTANCE_INVENTORY")
    if not path:
        pytest.fail("KUBESTRATA_ACCEPTANCE_INVENTORY is not set: give the hosts.yml of machines "
                    "with internet access (e.g. from `kubestrata up NAME --provider libvirt`)")
    inventory_path = Path(path).resolve()
    result = run_site(inventory_path)
    assert result.ok, result.failures
    cluster = Cluster(inventory_path)
    cluster.kubectl("apply -f -", stdin=WORKLOAD)
    cluster.kubectl(f"--namespace {NAMESPACE} rollout status daemonset/netexec --timeout 300s")
    yield cluster
    cluster.kubectl(f"delete namespace {NAMESPACE} --wait=false")


def test_a_second_run_of_every_layer_changes_nothing(cluster):
    again = run_site(cluster.inventory_path)
    assert again.ok and again.changes == 0, [layer.line() for layer in again.layers if layer.changes]


def test_every_node_is_ready(cluster):
    nodes = json.loads(cluster.kubectl("get nodes -o json"))["items"]
    ready = {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                         if c["type"] == "Ready") for n in nodes}
    assert ready == {n["inventory_hostname"]: "True" for n in cluster.nodes("k8s_cluster")}


def pods(cluster) -> dict[str, dict]:
    """netexec pods by node: {node: {"name", "ip"}}."""
    items = json.loads(cluster.kubectl(f"--namespace {NAMESPACE} get pods -o json"))["items"]
    return {p["spec"]["nodeName"]: {"name": p["metadata"]["name"], "ip": p["status"]["podIP"]}
            for p in items}


def test_a_pod_runs_on_every_worker(cluster):
    workers = {n["inventory_hostname"] for n in cluster.nodes("k8s_cluster")
               if "worker" in n["node_roles"]}
    assert workers <= set(pods(cluster))


def test_pods_reach_each_other_across_nodes(cluster):
    by_node = pods(cluster)
    for source_node, source in by_node.items():
        for target_node, target in by_node.items():
            answer = cluster.dial(source["name"], target["ip"], 8080)
            assert answer["responses"] == [target["name"]], (source_node, target_node, answer)


def test_a_service_answers_through_kube_proxy(cluster):
    service_ip = cluster.kubectl(f"--namespace {NAMESPACE} get service netexec "
                                 "-o jsonpath={.spec.clusterIP}")
    names = {p["name"] for p in pods(cluster).values()}
    for pod in names:
        answer = cluster.dial(pod, service_ip, 80)
        assert answer["responses"] and set(answer["responses"]) <= names, answer
    from_node = remote.run(cluster.first, f"curl -sS --max-time 5 http://{service_ip}/hostname")
    assert from_node.stdout.decode() in names


def test_cluster_dns_resolves_the_service(cluster):
    name = f"netexec.{NAMESPACE}.svc.cluster.local"
    for pod in (p["name"] for p in pods(cluster).values()):
        answer = cluster.dial(pod, name, 80)
        assert answer["responses"] and not answer.get("errors"), answer


def test_the_layer_checks_pass(cluster):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--hosts=ansible://all", f"--ansible-inventory={cluster.inventory_path}",
                             *verify.CHECK_DIRS],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:]
