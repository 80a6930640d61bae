"""cni: the reference plugins in /opt/cni/bin, this node's pod network and routes to its peers."""

import ipaddress
import json

import pytest

from kubestrata.cri.client import RuntimeClient
from tests.layers import remote
from tests.layers.checks.conftest import cri_socket

pytestmark = pytest.mark.cni

PLUGINS = ["bridge", "host-local", "loopback", "portmap"]
CONFLIST = "/etc/cni/net.d/10-kubestrata-bridge.conflist"


@pytest.fixture
def bridge_node(k8s_node):
    if k8s_node.get("cni_plugin", "bridge") != "bridge":
        pytest.skip("the pod network is an add-on the Kubernetes layer applies")
    return k8s_node


def test_reference_plugins_are_in_opt_cni_bin(host, k8s_node):
    for plugin in PLUGINS:
        assert host.file(f"/opt/cni/bin/{plugin}").is_executable, plugin
    version = json.loads(host.check_output("CNI_COMMAND=VERSION /opt/cni/bin/bridge"))
    assert "1.0.0" in version["supportedVersions"]


def test_conflist_is_valid_and_uses_the_node_pod_cidr(host, bridge_node):
    conflist = json.loads(host.file(CONFLIST).content_string)
    bridge = conflist["plugins"][0]
    assert conflist["cniVersion"] in json.loads(
        host.check_output("CNI_COMMAND=VERSION /opt/cni/bin/bridge"))["supportedVersions"]
    assert bridge["type"] == "bridge" and bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": bridge_node["pod_cidr"]}]]


def test_routes_lead_to_every_peer_pod_cidr(host, bridge_node, k8s_nodes):
    routes = {r["dst"]: r.get("gateway") for r in json.loads(host.check_output("ip -j -4 route"))}
    peers = [n for n in k8s_nodes if n["inventory_hostname"] != bridge_node["inventory_hostname"]]
    for peer in peers:
        assert routes.get(peer["pod_cidr"]) == peer["node_address"], peer["inventory_hostname"]
    pod_network = ipaddress.ip_network(bridge_node["pod_network_cidr"])
    in_pod_network = {d for d in routes if d != "default" and ipaddress.ip_network(d).subnet_of(pod_network)}
    own = {bridge_node["pod_cidr"]}
    assert in_pod_network - own == {p["pod_cidr"] for p in peers}


def test_the_runtime_sees_the_pod_network(k8s_node):
    with remote.forwarded_socket(k8s_node, cri_socket(k8s_node)) as socket, RuntimeClient(socket) as cri:
        assert cri.conditions()["NetworkReady"]
