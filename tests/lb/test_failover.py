"""The HA API endpoint on lab nodes: haproxy and keepalived on three control-plane nodes, a plain
TCP listener on each one's 6443 standing in for the API server (a test double, the transient unit
test-double-apiserver). When haproxy or keepalived stops on the node holding the virtual IP, the
address moves and new connections through it reach an API server again within 3 s."""

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import lab_cluster, needs_root, renamed_topology

pytestmark = [pytest.mark.lab, needs_root]

PROBE = Path(__file__).with_name("vip_probe.py")
RECOVERY_LIMIT_S = 3.0
# Answers every connection with the node's name, then closes it.
TEST_DOUBLE = ("import socket\n"
               "server = socket.create_server(('0.0.0.0', 6443))\n"
               "name = socket.gethostname().encode() + b'\\n'\n"
               "while True:\n"
               "    conn, _ = server.accept()\n"
               "    conn.sendall(name)\n"
               "    conn.close()\n")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp("failover")
    topo = renamed_topology("multi-master", work, "lbfail",
                            network={"cidr": "10.47.13.0/24"}, api={"virtual_ip": "10.47.13.5"},
                            node_groups={"worker": {"count": 0}})
    with lab_cluster(topo, work) as cluster:
        result = cluster.play("lb.yml", ha_endpoint_health_check="tcp")  # the double is TCP only
        assert result.ok, [str(f) for f in result.failures]
        for node in topo.with_role("control_plane"):
            cluster.ssh(node.name, "systemd-run --unit=test-double-apiserver -p RuntimeMaxSec=900 "
                                   f"python3 -c {shlex.quote(TEST_DOUBLE)}")
        yield cluster
        for node in topo.with_role("control_plane"):
            cluster.ssh(node.name, "systemctl stop test-double-apiserver", check=False)


def holders(cluster) -> list[str]:
    vip = cluster.topology.virtual_ip
    return [n.name for n in cluster.topology.load_balancers
            if cluster.ssh(n.name, f"ip -o -4 addr show to {vip}/32").strip()]


def measure_failover(cluster, stop: str) -> tuple[float, str, str, list]:
    """Stop a service on the virtual IP's holder while probing the endpoint; the seconds from the
    stop command until a new connection reaches an API server again, the old and new holder."""
    [before] = holders(cluster)
    vip, port = str(cluster.topology.virtual_ip), str(cluster.topology.api_port)
    probe = subprocess.Popen(["ip", "netns", "exec", cluster.lab.namespace, sys.executable,
                              str(PROBE), vip, port, "7"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    stopped_at = time.time()
    cluster.ssh(before, f"systemctl stop {stop}")
    samples = json.loads(probe.communicate(timeout=60)[0])
    after = [s for s in samples if s[0] >= stopped_at]
    failed = next((i for i, (_, answer) in enumerate(after) if answer is None), None)
    recovered = after[0] if failed is None else next((s for s in after[failed:] if s[1]), None)
    assert recovered, f"no connection through {vip}:{port} succeeded after {stop} stopped"
    [now] = holders(cluster)
    return recovered[0] - stopped_at, before, now, samples


@pytest.mark.parametrize("service", ["haproxy", "keepalived"])
def test_the_virtual_ip_moves_when_a_service_stops_on_its_holder(endpoint, service):
    names = {n.name for n in endpoint.topology.with_role("control_plane")}
    seconds, before, now, samples = measure_failover(endpoint, service)
    print(f"{service} stopped on {before}: the virtual IP moved to {now}; new connections reached "
          f"an API server again after {seconds:.2f} s")
    try:
        assert now != before
        assert seconds < RECOVERY_LIMIT_S
        assert {answer for _, answer in samples if answer} <= names
        assert samples[-1][1] in names
    finally:
        endpoint.ssh(before, f"systemctl start {service}")
    time.sleep(3)        # the old holder is back as a backup; no preemption moves the address
    assert holders(endpoint) == [now]
