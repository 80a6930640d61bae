"""etcd and the HA API endpoint on the shared lab of every topology (tests/conftest.py `site`,
after site.yml; tests/layers/test_site.py runs the layer checks and the second run there): the
members where the topology puts them, a private PKI that no run shows, exactly one holder of the
virtual IP where there is one. Then, on an ha-external-etcd lab of its own, the day-2 work: a
stopped member, backup and restore onto a fresh cluster, refused version jumps, a rolling
upgrade from trixie's etcd 3.5.16 to sid's 3.5.30 while a client keeps writing, and new members.

Debian offers no etcd 3.6, so the upgrade is the one a trixie site makes before Kubernetes 1.34:
3.5.16 is below kubeadm's minimum external etcd from 1.34 on (3.5.24), so that lab's topology
pins Kubernetes 1.33, which still accepts it, and the upgrade lifts etcd over the minimum."""

import json
import shlex
import stat
import time

import pytest

from tests.etcd.checks.conftest import TLS_PROBE
from tests.harness import lab_cluster, needs_root, renamed_topology

pytestmark = [pytest.mark.lab, needs_root]

# The issue's table: etcd members per topology, and whether they share the control-plane node.
MEMBERS = {"all-in-one": (1, True), "single-master": (1, True), "multi-master": (1, False),
           "ha-external-etcd": (3, False)}
UPGRADE_FROM, UPGRADE_TO = "3.5.16", "3.5.30"
BEFORE_KUBEADM_MINIMUM = "1.33.7"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """ha-external-etcd's three etcd members at UPGRADE_FROM, on a lab of their own."""
    work = tmp_path_factory.mktemp("etcd-day2")
    topo = renamed_topology("ha-external-etcd", work, "etcd", versions={
        "etcd": UPGRADE_FROM, "kubernetes": BEFORE_KUBEADM_MINIMUM})
    with lab_cluster(topo, work) as cluster:
        started = time.monotonic()
        first = cluster.play("etcd.yml")
        assert first.ok, [str(f) for f in first.failures]
        print(f"etcd layer on three members in {time.monotonic() - started:.0f} s")
        yield cluster


def members(cluster) -> list[dict]:
    first = cluster.topology.with_role("etcd")[0].name
    return json.loads(cluster.etcdctl(first, "member list -w json"))["members"]


# ---- every topology --------------------------------------------------------------------------

def test_the_members_are_where_the_topology_puts_them(site):
    count, on_control_plane = MEMBERS[site.topology.name.removeprefix("site-")]
    listed = sorted(m["name"] for m in members(site))
    assert listed == sorted(n.name for n in site.topology.with_role("etcd"))
    assert len(listed) == count
    assert all(site.topology.node(name).has("control_plane") == on_control_plane
               for name in listed)


def test_the_controller_keeps_the_pki_private_and_no_run_shows_a_key(site):
    pki = site.work / "pki" / "etcd"
    directories = [pki, *(path for path in pki.iterdir() if path.is_dir())]
    keys = sorted(pki.rglob("*.key"))
    assert {oct(stat.S_IMODE(d.stat().st_mode)) for d in directories} == {"0o700"}
    assert keys and {oct(stat.S_IMODE(k.stat().st_mode)) for k in keys} == {"0o600"}
    logged = [path for path in (site.work / "runs").rglob("*")
              if path.is_file() and b"PRIVATE KEY" in path.read_bytes()]
    assert logged == []


def test_only_ha_topologies_have_a_virtual_ip_holder(site):
    holders = [n.name for n in site.topology.load_balancers
               if site.ssh(n.name, f"ip -o -4 addr show to {site.topology.virtual_ip}/32")]
    assert len(holders) == (1 if site.topology.is_ha else 0), holders


# ---- ha-external-etcd: day-2 operations ------------------------------------------------------

def test_writes_and_reads_go_on_with_a_member_stopped_and_it_catches_up(cluster):
    one, two, three = (n.name for n in cluster.topology.with_role("etcd"))
    cluster.ssh(three, "systemctl stop etcd")
    try:
        for i in range(20):
            cluster.etcdctl(one, f"put member-down/{i:02d} value-{i}")
        assert cluster.etcdctl(two, "get member-down/ --prefix --keys-only").split() == \
            [f"member-down/{i:02d}" for i in range(20)]
        health = cluster.ssh(one, "set -a; . /etc/etcd/etcdctl.env; set +a; "
                                  "etcdctl endpoint health --cluster 2>&1", check=False)
        assert health.count("is healthy") == 2 and "is unhealthy" in health, health
        # The etcd check's probe of a client without a certificate: a running member says no
        # with a TLS alert; the stopped one is unreachable, which the check does not count.
        for member, answer in ((two, "refused: TLSV13_ALERT_CERTIFICATE_REQUIRED"),
                               (three, "unreachable: [Errno 111] Connection refused")):
            address = cluster.topology.node(member).address
            probe = cluster.ssh(one, f"python3 -c {shlex.quote(TLS_PROBE)} {address} 2379 "
                                     f"/etc/etcd/pki/ca.crt - - {address}", check=False)
            assert probe.strip() == answer, member
    finally:
        cluster.ssh(three, "systemctl start etcd")
    cluster.etcdctl(three, "endpoint health --cluster")
    caught_up = cluster.etcdctl(three, "get member-down/19 --print-value-only --consistency=s")
    assert caught_up.strip() == "value-19"
    status = json.loads(cluster.etcdctl(one, "endpoint status --cluster -w json"))
    revisions = {s["Status"]["header"]["revision"] for s in status}
    assert len(status) == 3 and len(revisions) == 1, status


def test_backup_then_restore_onto_a_fresh_cluster_brings_the_keys_back(cluster):
    one = cluster.topology.with_role("etcd")[0].name
    for i in range(10):
        cluster.etcdctl(one, f"put before-backup/{i} value-{i}")
    stale = cluster.backups / f"{cluster.topology.name}-etcd-20000101T000000Z.db"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"an old snapshot, pruned by the retention count")

    backup = cluster.play("etcd-backup.yml", etcd_backup_retention=1)
    assert backup.ok, [str(f) for f in backup.failures]
    [snapshot] = sorted(cluster.backups.iterdir())
    assert snapshot.name.startswith(f"{cluster.topology.name}-etcd-") and snapshot != stale
    assert snapshot.stat().st_mode & 0o777 == 0o600
    cluster.etcdctl(one, "put after-backup/x written-after-the-snapshot")

    # A fresh cluster on the same nodes: data gone, the etcd layer run again.
    for node in cluster.topology.with_role("etcd"):
        cluster.ssh(node.name, "systemctl stop etcd && "
                               f"rm -rf /var/lib/etcd/{cluster.topology.name}")
    fresh = cluster.play("etcd.yml")
    assert fresh.ok, [str(f) for f in fresh.failures]
    assert cluster.etcdctl(one, "get before-backup/ --prefix --keys-only").strip() == ""

    restore = cluster.play("etcd-restore.yml", etcd_restore_snapshot=str(snapshot))
    assert restore.ok, [str(f) for f in restore.failures]
    for node in cluster.topology.with_role("etcd"):
        keys = cluster.etcdctl(node.name, "get before-backup/ --prefix --keys-only --consistency=s")
        assert keys.split() == [f"before-backup/{i}" for i in range(10)], node.name
    assert cluster.etcdctl(one, "get after-backup/x --print-value-only").strip() == ""
    assert len(members(cluster)) == 3
    cluster.etcdctl(one, "endpoint health --cluster")


@pytest.mark.parametrize("version", ["3.7.0", "3.4.30", "4.0.0"])
def test_a_version_change_etcd_does_not_support_is_refused_before_anything_changes(cluster,
                                                                                    version):
    refused = cluster.play("etcd.yml", etcd_version=version)
    assert not refused.ok
    assert any("one minor version at a time" in f.message for f in refused.failures), \
        [str(f) for f in refused.failures]
    assert refused.changes == 0
    for node in cluster.topology.with_role("etcd"):
        assert f"etcd Version: {UPGRADE_FROM}" in cluster.ssh(node.name, "etcd --version")


WRITER = """\
set -a; . /etc/etcd/etcdctl.env; set +a
export ETCDCTL_ENDPOINTS={endpoints}
for i in $(seq -w 1 20000); do
  [ -e /run/test-etcd-writer.stop ] && break
  if etcdctl put upgrade-load/$i v$i >/dev/null 2>&1; then echo $i >> /run/test-etcd-writer.acked
  else echo $i >> /run/test-etcd-writer.failed; fi
done
"""


def test_a_rolling_upgrade_under_load_loses_no_acknowledged_write(cluster):
    etcd = cluster.topology.with_role("etcd")
    endpoints = ",".join(f"https://{n.address}:2379" for n in etcd)
    writer = etcd[0].name
    # The client: a bounded write loop (20000 keys, 10 minutes at most) in a transient unit.
    script = shlex.quote(WRITER.format(endpoints=endpoints))
    cluster.ssh(writer, "rm -f /run/test-etcd-writer.*; systemd-run --unit=test-etcd-writer "
                        f"-p RuntimeMaxSec=600 /bin/bash -c {script}")
    try:
        time.sleep(3)
        started = time.monotonic()
        upgrade = cluster.play("etcd.yml", etcd_version=UPGRADE_TO)
        took = time.monotonic() - started
        time.sleep(3)
    finally:
        cluster.ssh(writer, "touch /run/test-etcd-writer.stop; "
                            "while systemctl is-active -q test-etcd-writer; do sleep 0.2; done; "
                            "systemctl reset-failed test-etcd-writer 2>/dev/null || true")
    assert upgrade.ok, [str(f) for f in upgrade.failures]
    # The handlers took the members down one at a time, each followed by a cluster health check.
    output = next((upgrade.run_dir / "artifacts").glob("*/stdout")).read_text()
    handlers = [line.split("etcd : ", 1)[1].rstrip("] *") for line in output.splitlines()
                if line.startswith("RUNNING HANDLER [etcd : Restart etcd on")
                or line.startswith("RUNNING HANDLER [etcd : Wait until every member reports")]
    assert handlers == [step for node in etcd for step in (
        f"Restart etcd on {node.name}",
        f"Wait until every member reports the cluster healthy, asked on {node.name}")], handlers

    acked = cluster.ssh(writer, "cat /run/test-etcd-writer.acked").split()
    failed = cluster.ssh(writer, "cat /run/test-etcd-writer.failed 2>/dev/null || true").split()
    stored = cluster.etcdctl(writer, "get upgrade-load/ --prefix").split()
    values = dict(zip(stored[0::2], stored[1::2]))
    lost = [i for i in acked if values.get(f"upgrade-load/{i}") != f"v{i}"]
    print(f"upgrade {UPGRADE_FROM} -> {UPGRADE_TO} took {took:.0f} s; the client's writes: "
          f"{len(acked)} acknowledged, {len(failed)} refused while members restarted, "
          f"{len(lost)} acknowledged but lost")
    assert len(acked) > 100 and lost == []

    status = json.loads(cluster.etcdctl(writer, "endpoint status --cluster -w json"))
    assert sorted(s["Status"]["version"] for s in status) == [UPGRADE_TO] * 3
    cluster.etcdctl(writer, "endpoint health --cluster")
    assert any(f"before-{UPGRADE_TO}" in p.name for p in cluster.backups.iterdir())


def test_adding_members_issues_only_their_certificates(cluster):
    pki = cluster.work / "pki" / "etcd"
    issued = {path: path.read_bytes() for path in pki.rglob("*") if path.is_file()}
    old = [n.name for n in cluster.topology.with_role("etcd")]
    new = [n.name for n in cluster.topology.with_role("worker")]
    grown = cluster.play("etcd.yml", inventory=cluster.inventory_with_etcd_members(old + new),
                         etcd_version=UPGRADE_TO)
    assert grown.ok, [str(f) for f in grown.failures]

    now = {path: path.read_bytes() for path in pki.rglob("*") if path.is_file()}
    assert {path: now[path] for path in issued} == issued
    assert {path.parent.name for path in set(now) - set(issued)} == set(new)
    assert sorted(m["name"] for m in members(cluster)) == sorted(old + new)
    health = json.loads(cluster.etcdctl(old[0], "endpoint health --cluster -w json"))
    assert len(health) == 5 and all(endpoint["health"] for endpoint in health)
