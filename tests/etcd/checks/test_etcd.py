"""etcd: a systemd service with TLS on client and peer ports, every member healthy, clients
without a certificate refused, writes replicated; the API servers' client certificate accepted."""

import json
import time

import pytest

from tests.etcd.checks.conftest import etcdctl, owners_and_modes, tls_get_version

pytestmark = pytest.mark.etcd

PKI = "/etc/etcd/pki"
CA = f"{PKI}/ca.crt"


def test_etcd_is_active_and_enabled(host, member):
    etcd = host.service("etcd")
    assert etcd.is_running and etcd.is_enabled


def test_version_is_the_pinned_one(host, member):
    assert f"etcd Version: {member['etcd_version']}" in host.check_output("etcd --version")


def test_listens_on_client_peer_and_metrics_ports(host, member):
    address = member["node_address"]
    for url in (f"tcp://{address}:2379", "tcp://127.0.0.1:2379", f"tcp://{address}:2380",
                "tcp://127.0.0.1:2381"):
        assert host.socket(url).is_listening, url


def test_files_have_the_right_owners_and_modes(host, member):
    expected = {
        "/etc/etcd/etcd.env": ("root", "etcd", 0o640),
        CA: ("root", "root", 0o644),
        f"/var/lib/etcd/{member['cluster_name']}": ("etcd", "etcd", 0o700),
    }
    for name in ("server", "peer", "healthcheck-client"):
        expected[f"{PKI}/{name}.crt"] = ("root", "root", 0o644)
        expected[f"{PKI}/{name}.key"] = ("etcd", "etcd", 0o600)
    assert owners_and_modes(host, list(expected)) == expected


def test_every_member_of_the_etcd_group_is_in_the_cluster(host, member):
    listed = json.loads(etcdctl(host, "member list -w json").stdout)["members"]
    assert sorted(m["name"] for m in listed) == sorted(member["groups"]["etcd"])
    urls = [url for m in listed for url in m["peerURLs"] + m["clientURLs"]]
    assert urls and all(url.startswith("https://") for url in urls)


def test_every_member_reports_the_cluster_healthy(host, member):
    result = etcdctl(host, "endpoint health --cluster -w json")
    assert result.rc == 0, result.stderr
    health = json.loads(result.stdout)
    assert len(health) == len(member["groups"]["etcd"])
    assert all(endpoint["health"] for endpoint in health), health


def test_server_certificate_names_the_member(host, member):
    cert, key = f"{PKI}/healthcheck-client.crt", f"{PKI}/healthcheck-client.key"
    for name in (member["node_address"], member["inventory_hostname"]):
        served = tls_get_version(host, member["node_address"], 2379, CA, cert, key,
                                 server_name=name)
        assert served.rc == 0, served.stdout
        assert '"etcdserver"' in served.stdout


@pytest.mark.parametrize("port", [2379, 2380])
def test_a_client_without_a_certificate_is_refused(host, member, port):
    # The server itself must say no: a TLS alert, not a closed port.
    refused = tls_get_version(host, member["node_address"], port, CA)
    assert refused.rc == 1 and "_ALERT_" in refused.stdout, refused.stdout


def test_a_write_on_one_member_reaches_every_member(host, member):
    key = f"kubestrata-check/{member['inventory_hostname']}"
    value = str(time.time_ns())
    assert etcdctl(host, f"put {key} {value}").rc == 0
    try:
        for listed in json.loads(etcdctl(host, "member list -w json").stdout)["members"]:
            seen = ""
            for _ in range(20):        # a serializable read answers from that member alone
                seen = etcdctl(host, f"get {key} --print-value-only --consistency=s",
                               endpoint=listed["clientURLs"][0]).stdout.strip()
                if seen == value:
                    break
                time.sleep(0.25)
            assert seen == value, f"{listed['name']} does not have the write"
    finally:
        etcdctl(host, f"del {key}")


def test_apiserver_client_certificate_files(host, control_plane):
    expected = {CA: ("root", "root", 0o644),
                f"{PKI}/apiserver-etcd-client.crt": ("root", "root", 0o644),
                f"{PKI}/apiserver-etcd-client.key": ("root", "root", 0o600)}
    assert owners_and_modes(host, list(expected)) == expected


def test_every_member_accepts_the_apiserver_client_certificate(host, control_plane, inventory):
    for name in control_plane["groups"]["etcd"]:
        address = inventory.get_variables(name)["node_address"]
        served = tls_get_version(host, address, 2379, CA, f"{PKI}/apiserver-etcd-client.crt",
                                 f"{PKI}/apiserver-etcd-client.key")
        assert served.rc == 0, f"{name}: {served.stdout}"
