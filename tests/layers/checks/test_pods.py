"""One real action through all three layers: through the CRI, a pod sandbox and a container of
an image imported offline run on every Kubernetes node, and pods reach each other by their pod
addresses across nodes (and leave the pod network through NAT)."""

import ipaddress
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from kubestrata.cri.client import Pod, RuntimeClient
from tests.layers import offline_image, remote
from tests.layers.checks.conftest import cri_socket, runtime_fact

pytestmark = pytest.mark.cni

# The pods' cgroup parent, in the form the node's cgroup driver wants.
CGROUP_PARENT = {"systemd": "kubestrata.slice", "cgroupfs": "/kubestrata"}


@dataclass
class ProbePod:
    node: dict
    cri: RuntimeClient
    pod: Pod
    container: str
    ip: str

    def ping(self, address: str) -> tuple[int, str]:
        return self.cri.exec(self.container, ["ping", "-c", "1", "-W", "3", address])


@pytest.fixture(scope="module")
def probe_pods(k8s_nodes):
    """A pod running the offline test image on every Kubernetes node; removed afterwards."""
    if any(n.get("container_runtime", "containerd") != "containerd" for n in k8s_nodes):
        pytest.skip("the offline image is imported with containerd's ctr")
    if any(remote.run(n, "systemctl is-active --quiet kubelet").returncode == 0 for n in k8s_nodes):
        # The kubelet stops and removes pods it did not make within seconds (and, when they
        # had no log path, once removed the node's /bin with them; the client sets one now):
        # with a kubelet, pods are checked through the API (tests/kubernetes/checks/test_cluster.py).
        pytest.skip("the kubelet runs: pods are checked through the Kubernetes API instead")
    image = offline_image.tarball()
    with ExitStack() as stack:
        pods = []
        for node in k8s_nodes:
            imported = remote.run(node, "ctr -n k8s.io images import -", stdin=image)
            assert imported.returncode == 0, imported.stderr.decode()
            socket = stack.enter_context(remote.forwarded_socket(node, cri_socket(node)))
            cri = stack.enter_context(RuntimeClient(socket))
            driver = runtime_fact(node)["cgroup_driver"]
            pod = cri.run_pod(f"probe-{node['inventory_hostname']}", "kubestrata-checks",
                              str(uuid.uuid4()), CGROUP_PARENT[driver])
            stack.callback(cri.remove_pod, pod)
            container = cri.run_container(pod, "probe", offline_image.TEST_IMAGE,
                                          ["sleep", "infinity"])
            pods.append(ProbePod(node, cri, pod, container, cri.pod_ip(pod)))
        yield pods


def test_a_pod_runs_on_every_node_with_an_address_from_its_pod_cidr(probe_pods):
    for probe in probe_pods:
        assert probe.cri.image_present(offline_image.TEST_IMAGE)
        assert probe.cri.container_running(probe.container)
        if probe.node.get("cni_plugin", "bridge") == "bridge":
            assert ipaddress.ip_address(probe.ip) in ipaddress.ip_network(probe.node["pod_cidr"])
        code, output = probe.cri.exec(probe.container, ["ip", "-4", "addr", "show", "eth0"])
        assert code == 0 and f"inet {probe.ip}/" in output


def test_each_pod_reaches_the_pod_on_the_next_node_by_its_pod_address(probe_pods):
    if len(probe_pods) < 2:
        pytest.skip("a single Kubernetes node: no pod on another node to reach")
    for probe, peer in zip(probe_pods, probe_pods[1:] + probe_pods[:1]):
        code, output = probe.ping(peer.ip)
        assert code == 0, f"{probe.node['inventory_hostname']} -> " \
                          f"{peer.node['inventory_hostname']} ({peer.ip}): {output}"


def test_pod_traffic_leaving_the_pod_network_is_masqueraded(probe_pods):
    # The node network's gateway has no route to any pod CIDR: replies only come back
    # when the node NATs the pod's traffic to its own address.
    probe = probe_pods[0]
    if probe.node.get("cni_plugin", "bridge") != "bridge":
        pytest.skip("the pod network is an add-on the Kubernetes layer applies")
    code, output = probe.ping(probe.node["node_network_gateway"])
    assert code == 0, output
