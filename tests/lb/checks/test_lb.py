"""HA API endpoint: haproxy forwards the virtual IP's port to every API server and, once they
run, finds each of them up; keepalived holds the virtual IP on exactly one lb node, and the
endpoint accepts connections."""

import csv
import shlex

import pytest

from tests.etcd.checks.conftest import owners_and_modes
from tests.layers.remote import eventually

pytestmark = pytest.mark.lb

HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONFIG = "/etc/keepalived/keepalived.conf"
API_SERVER_PORT = 6443
# haproxy's own view of its servers, as CSV, from its stats socket (no socat on the nodes).
SHOW_STAT = ("import socket; s = socket.socket(socket.AF_UNIX); "
             "s.connect('/run/haproxy/admin.sock'); s.sendall(b'show stat\\n'); "
             "print(s.makefile().read())")


def test_haproxy_and_keepalived_are_active_and_enabled(host, lb_node):
    for name in ("haproxy", "keepalived"):
        service = host.service(name)
        assert service.is_running and service.is_enabled, name


def test_configurations_are_valid_and_root_owned(host, lb_node):
    assert owners_and_modes(host, [HAPROXY_CONFIG, KEEPALIVED_CONFIG]) == {
        HAPROXY_CONFIG: ("root", "root", 0o644), KEEPALIVED_CONFIG: ("root", "root", 0o644)}
    assert host.run(f"haproxy -c -f {HAPROXY_CONFIG}").rc == 0
    assert host.run(f"keepalived -t -f {KEEPALIVED_CONFIG}").rc == 0


def test_haproxy_forwards_to_every_api_server(host, lb_node, inventory):
    config = host.file(HAPROXY_CONFIG).content_string
    for name in inventory.get_hosts("kube_control_plane"):
        address = inventory.get_variables(name)["node_address"]
        assert f"server {name} {address}:6443" in config, name
    assert host.socket(f"tcp://{lb_node['api_virtual_ip']}:{lb_node['api_endpoint_port']}") \
        .is_listening


def test_haproxy_finds_every_api_server_up(host, lb_node, inventory):
    """haproxy's health checks (the API server's /readyz) pass for every control plane. Before
    any API server listens (the layer alone, or a run that stopped before Kubernetes) there is
    nothing to find up."""
    planes = inventory.get_hosts("kube_control_plane")
    if not any(inventory.get_host(name).run(f"ss -Hltn 'sport = :{API_SERVER_PORT}'").stdout.strip()
               for name in planes):
        pytest.skip(f"no API server listens on :{API_SERVER_PORT} yet")

    def servers() -> dict[str, str]:
        stats = host.run(f"python3 -c {shlex.quote(SHOW_STAT)}").stdout
        rows = csv.DictReader(stats.lstrip("# ").splitlines())
        return {row["svname"]: row["status"] for row in rows
                if row["pxname"] == "kube_apiservers" and row["svname"] != "BACKEND"}

    expected = {name: "UP" for name in planes}
    found = eventually(servers, within=30, succeeded=lambda found: found == expected)
    assert found == expected, f"haproxy's servers and their state: {found}"


def test_exactly_one_lb_node_holds_the_virtual_ip(inventory):
    names = inventory.get_hosts("lb")
    if not names:
        pytest.skip("this topology has no virtual IP")
    vip = inventory.get_variables(names[0])["api_virtual_ip"]
    holders = [name for name in names
               if inventory.get_host(name).run(f"ip -o -4 addr show to {vip}/32").stdout.strip()]
    assert len(holders) == 1, holders


def test_the_endpoint_accepts_connections_from_every_lb_node(host, lb_node):
    vip, port = lb_node["api_virtual_ip"], lb_node["api_endpoint_port"]
    connect = host.run("python3 -c 'import socket, sys; "
                       "socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)' "
                       f"{vip} {port}")
    assert connect.rc == 0, connect.stderr
