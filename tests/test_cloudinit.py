"""The pieces the VM path reuses outside Pulumi: cloud-init seeds, host keys, libvirt checks."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest
import yaml

from kubestrata import cloudinit, hostkeys, topology, vms

ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 me: #1"


@pytest.fixture
def keys(tmp_path):
    def make(topo):
        return hostkeys.ensure(tmp_path / "keys", [n.name for n in topo.nodes])
    return make


@pytest.mark.parametrize("name", topology.NAMES)
def test_seed_is_the_nodes_own(name, keys):
    topo = topology.load(name)
    host_keys = keys(topo)
    for node in topo.nodes:
        seed = cloudinit.render(topo, node, "kubestrata", ADMIN_KEY, host_keys[node.name])
        assert seed.user_data.startswith("#cloud-config\n")
        data = yaml.safe_load(seed.user_data)
        assert (data["hostname"], data["fqdn"]) == (node.name, f"{node.name}.{topo.domain}")
        assert data["users"][0]["ssh_authorized_keys"] == [ADMIN_KEY]   # quoted intact
        assert data["ssh_keys"]["ed25519_private"] == host_keys[node.name].private
        assert data["ssh_keys"]["ed25519_public"] == host_keys[node.name].public
        hosts = data["write_files"][0]["content"].splitlines()
        for other in topo.nodes:
            assert f"{other.address} {other.name}.{topo.domain} {other.name}" in hosts
        meta = yaml.safe_load(seed.meta_data)
        assert meta == {"instance-id": vms.domain_name(topo, node), "local-hostname": node.name}
        ethernet = yaml.safe_load(seed.network_config)["ethernets"]["eth0"]
        assert ethernet["routes"] == [{"to": "default", "via": str(topo.gateway)}]
        assert "gateway4" not in ethernet, "deprecated: cloud-init 25 reports the boot degraded"
        assert ethernet["nameservers"]["addresses"] == [str(topo.gateway)]


def test_user_data_needs_no_internet_at_first_boot(keys):
    topo = topology.load("all-in-one")
    node = topo.nodes[0]
    data = yaml.safe_load(cloudinit.render(topo, node, "kubestrata", ADMIN_KEY,
                                           keys(topo)[node.name]).user_data)
    assert data["package_update"] is False and data["package_upgrade"] is False
    assert not {"packages", "apt", "runcmd", "bootcmd", "snap"} & set(data)


def test_private_keys_stay_out_of_reprs(keys):
    topo = topology.load("all-in-one")
    key = keys(topo)["node-1"]
    seed = cloudinit.render(topo, topo.nodes[0], "kubestrata", ADMIN_KEY, key)
    assert "PRIVATE KEY" not in repr(key) and "PRIVATE KEY" not in repr(seed)


def test_host_keys_are_made_once_and_kept_private(tmp_path):
    directory = tmp_path / "state" / "libvirt" / "stack"
    first = hostkeys.ensure(directory, ["a", "b"])
    again = hostkeys.ensure(directory, ["a", "b", "c"])
    assert again["a"] == first["a"] and again["b"] == first["b"]
    assert len({k.public for k in again.values()}) == 3
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in directory.iterdir()} == {0o600}
    assert first["a"].public.startswith("ssh-ed25519 ")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)")
def test_openssh_reads_the_keys_and_known_hosts(tmp_path):
    topo = topology.load("single-master")
    keys = hostkeys.ensure(tmp_path / "keys", [n.name for n in topo.nodes])
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(tmp_path / "keys" / "cp-1_ed25519")],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert derived == keys["cp-1"].public
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(hostkeys.known_hosts(topo, keys))
    for name in ("worker-2", "worker-2.kubestrata.internal", str(topo.node("worker-2").address)):
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(known_hosts)],
                               capture_output=True, text=True)
        assert found.returncode == 0, name
        assert keys["worker-2"].public.split()[1] in found.stdout


def test_macs_are_stable_and_distinct():
    nodes = [(topology.load(name), node) for name in topology.NAMES
             for node in topology.load(name).nodes]
    macs = [vms.mac_address(topo, node) for topo, node in nodes]
    assert len(set(macs)) == len(macs)
    assert all(mac.startswith("52:54:00:") and len(mac) == 17 for mac in macs)
    topo = topology.load("all-in-one")
    assert vms.mac_address(topo, topo.nodes[0]) == vms.mac_address(topo, topo.nodes[0])


@pytest.mark.parametrize("settings, message", [
    (vms.Settings(ssh_public_key="not a key"), "sshPublicKey"),
    (vms.Settings(ssh_public_key=ADMIN_KEY, admin_user="root"), "adminUser"),
    (vms.Settings(ssh_public_key=ADMIN_KEY, admin_user="Admin User"), "adminUser"),
    (vms.Settings(ssh_public_key=ADMIN_KEY, bridge="a-bridge-name-too-long"), "bridge"),
])
def test_settings_are_checked(settings, message):
    problems = vms.check(topology.load("all-in-one"), settings)
    assert len(problems) == 1 and problems[0].startswith(f"kubestrata:{message}")


def test_nodes_on_several_hypervisors_need_a_bridge():
    topo = topology.load("single-master", {"node_groups": {"worker": {
        "libvirt_uri": "qemu+ssh://admin@kvm2/system"}}})
    assert "bridge" in vms.check(topo, vms.Settings(ssh_public_key=ADMIN_KEY))[0]
    assert vms.check(topo, vms.Settings(ssh_public_key=ADMIN_KEY, bridge="br0")) == []
    by_uri = vms.hypervisors(topo, vms.Settings(ssh_public_key=ADMIN_KEY))
    assert {uri: [n.name for n in nodes] for uri, nodes in by_uri.items()} == {
        "qemu:///system": ["cp-1"], "qemu+ssh://admin@kvm2/system": ["worker-1", "worker-2"]}


def test_default_public_key_prefers_ed25519(tmp_path):
    assert vms.default_public_key(tmp_path) is None
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa.pub").write_text("ssh-rsa AAAA rsa\n")
    assert vms.default_public_key(tmp_path) == "ssh-rsa AAAA rsa"
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA ed\n")
    assert vms.default_public_key(tmp_path) == "ssh-ed25519 AAAA ed"
