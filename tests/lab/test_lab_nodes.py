"""Each topology as lab nodes: reachable by Ansible, named and addressed as the topology says,
fed by the package mirror, closed to the outside, idempotent, and gone without trace after down."""

import json
import subprocess
import tempfile

from kubestrata import playbook
from kubestrata.lab import mirror, network
from tests.lab.conftest import ssh, venv_tool


def test_every_node_answers_ansible_ping_from_the_lab_namespace(lab):
    result = subprocess.run(
        [venv_tool("kubestrata"), "lab", "run", lab.name, "--", venv_tool("ansible"), "all",
         "-m", "ping"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    answered = {line.split()[0] for line in result.stdout.splitlines() if "SUCCESS" in line}
    assert answered == {n.name for n in lab.topology.nodes}
    # Shared SSH connections stay in this lab's own directory: other labs use the same addresses.
    assert any(p.is_socket() for p in lab.control_path_dir.iterdir())


def test_hostnames_and_addresses_match_the_topology(lab):
    for node in lab.topology.nodes:
        out = ssh(lab, node, "hostname; ip -4 -j addr show dev eth0")
        hostname, addresses = out.split("\n", 1)
        assigned = [a["local"] + "/" + str(a["prefixlen"])
                    for a in json.loads(addresses)[0]["addr_info"]]
        assert hostname == node.name
        assert assigned == [f"{node.address}/{lab.topology.network.prefixlen}"]


def test_the_mirror_serves_packages_to_a_node(lab):
    node = lab.topology.nodes[-1]
    out = ssh(lab, node, "apt-get -qq update && apt-get install -y -qq --no-install-recommends "
                         "socat >/dev/null && socat -V | head -2 && apt-cache policy socat")
    assert "socat version" in out
    assert f"http://{lab.topology.gateway}:{mirror.PORT} ./ Packages" in out


def test_the_lab_has_no_route_out(lab):
    routes = subprocess.run(["ip", "-n", lab.namespace, "-j", "route"], capture_output=True,
                            text=True, check=True).stdout
    assert [r["dst"] for r in json.loads(routes)] == [str(lab.topology.network)]
    assert network.pids(lab.namespace)   # the mirror server lives here and only here


def test_up_again_changes_nothing(lab):
    assert lab.up(log=lambda msg: None) == []


def test_status_reports_every_node_running_and_reachable(lab):
    rows = lab.status()
    assert [r.name for r in rows] == [n.name for n in lab.topology.nodes]
    assert all(r.running and r.ssh and r.rss_mib > 0 for r in rows)


def test_a_node_whose_host_key_is_not_the_known_one_is_refused(lab, tmp_path):
    """Every kubestrata command runs Ansible through ansible-runner, which turns host key
    checking off unless told: a node answering with another key must fail, not be trusted."""
    known_hosts = tmp_path / "known_hosts"
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other_key], check=True)
    key = " ".join(other_key.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text("".join(f"{line.split()[0]} {key}\n"
                                   for line in lab.known_hosts.read_text().splitlines()))
    # A socket directory of its own: a master connection of the lab's would skip the handshake.
    with tempfile.TemporaryDirectory(prefix="ks-hk-") as sockets:
        text = lab.inventory_path.read_text().replace(str(lab.known_hosts), str(known_hosts))
        text = text.replace(str(lab.control_path_dir), sockets)
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(text)
        playbook_file = tmp_path / "hostname.yml"
        playbook_file.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                 "    - ansible.builtin.command: hostname\n")
        result = playbook.run(playbook_file, inventory, out=lambda line: None)
    assert not result.ok
    assert {f.host for f in result.failures} == {n.name for n in lab.topology.nodes}
    assert all("host key" in f.message.lower() or "IDENTIFICATION HAS CHANGED" in f.message
               for f in result.failures), [f.message for f in result.failures]
