"""HA API endpoint: haproxy forwards the virtual IP's port to every API server, keepalived
holds the virtual IP on exactly one lb node, and the endpoint accepts connections."""

import pytest

from tests.etcd.checks.conftest import owners_and_modes

pytestmark = pytest.mark.lb

HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONFIG = "/etc/keepalived/keepalived.conf"


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
