"""etcd: a systemd service with TLS on client and peer ports, every member healthy, clients
without a certificate refused, writes replicated, scheduled snapshots on every member; the API
servers' client certificate accepted."""

import json
import shlex
import time

import pytest

from tests.etcd.checks.conftest import (etcdctl, etcdctl_json, last_line, owners_and_modes,
                                        setting, tls_get_version)

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
    listed = etcdctl_json(host, "member list")["members"]
    assert sorted(m["name"] for m in listed) == sorted(member["groups"]["etcd"])
    urls = [url for m in listed for url in m["peerURLs"] + m["clientURLs"]]
    assert urls and all(url.startswith("https://") for url in urls)


def test_every_member_reports_the_cluster_healthy(host, member):
    health = etcdctl_json(host, "endpoint health --cluster")
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
    written = etcdctl(host, f"put {key} {value}")
    assert written.rc == 0, last_line(written.stderr)
    try:
        for listed in etcdctl_json(host, "member list")["members"]:
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


def test_the_snapshot_timer_is_enabled_and_active_on_its_schedule(host, member):
    timer = host.service("etcd-snapshot.timer")
    assert timer.is_enabled and timer.is_running
    schedule = setting(member, "etcd_scheduled_snapshot_on_calendar")
    normalized = host.check_output(f"systemd-analyze calendar {shlex.quote(schedule)}")
    expected = normalized.split("Normalized form:", 1)[1].splitlines()[0].strip()
    calendar = host.check_output("systemctl show etcd-snapshot.timer -p TimersCalendar --value")
    assert f"OnCalendar={expected} ;" in calendar, calendar


def test_a_snapshot_run_saves_a_valid_snapshot_and_keeps_the_newest(host, member):
    directory = setting(member, "etcd_scheduled_snapshot_dir")
    keep = int(setting(member, "etcd_scheduled_snapshot_keep"))
    prefix = f"{directory}/{member['cluster_name']}-etcd-"
    # As many old snapshots as are kept: the run must leave only the newest `keep`.
    old = [f"{prefix}20000101T{i:06d}Z.db" for i in range(keep)]
    listed = f"ls -1 {prefix}*.db 2>/dev/null || true"
    before = set(host.check_output(listed).split())
    host.run_expect([0], f"umask 077; touch {shlex.join(old)}")
    try:
        run = host.run("timeout 300 systemctl start etcd-snapshot.service")
        assert run.rc == 0, host.run("journalctl -u etcd-snapshot.service -n 4 -o cat").stdout
        after = host.check_output(listed).split()
    finally:
        host.run(f"rm -f {shlex.join(old)}")
    made = set(after) - before - set(old)
    assert len(made) == 1, f"the run made {sorted(made)}"
    new = made.pop()
    assert len(after) == keep and new == max(after) and old[0] not in after, after
    status = host.run(f"$(command -v etcdutl || echo etcdctl) snapshot status {new} -w json")
    assert status.rc == 0 and json.loads(status.stdout)["totalKey"] > 0, status.stderr
    assert owners_and_modes(host, [directory, new]) == {directory: ("root", "root", 0o700),
                                                         new: ("root", "root", 0o600)}


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
