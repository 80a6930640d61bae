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
        [hosts] = data["write_files"]
        assert hosts["path"] == "/etc/hosts" and data["manage_etc_hosts"] is False
        assert [line for line in hosts["content"].splitlines() if "kubestrata" in line] == [
            f"{node.address} {node.name}.{topo.domain} {node.name}"], "the node itself only"
        meta = yaml.safe_load(seed.meta_data)
        assert meta == {"instance-id": f"{vms.domain_name(topo, node)}-{seed.digest}",
                        "local-hostname": node.name}
        ethernet = yaml.safe_load(seed.network_config)["ethernets"]["eth0"]
        assert ethernet["routes"] == [{"to": "default", "via": str(topo.gateway)}]
        assert "gateway4" not in ethernet, "deprecated: cloud-init 25 reports the boot degraded"
        assert ethernet["nameservers"]["addresses"] == [str(topo.gateway)]


def test_scaling_leaves_the_other_nodes_seeds_as_they_are(keys):
    """No seed names the other nodes (Ansible's prepare role writes /etc/hosts), so a new
    worker changes no other node's seed, and no domain is replaced for it."""
    two, three = (topology.load("single-master", {"node_groups": {"worker": {"count": count}}})
                  for count in (2, 3))
    host_keys = keys(three)
    for node in two.nodes:
        assert cloudinit.render(two, node, "kubestrata", ADMIN_KEY, host_keys[node.name]) == \
            cloudinit.render(three, three.node(node.name), "kubestrata", ADMIN_KEY,
                             host_keys[node.name]), node.name


def test_the_instance_id_follows_the_seeds_content(keys):
    """cloud-init runs its per-instance modules again when the instance-id changes: exactly
    when the seed does."""
    topo = topology.load("single-master")
    host_keys = keys(topo)

    def instance_id(node, admin_key=ADMIN_KEY, admin="kubestrata"):
        seed = cloudinit.render(topo, topo.node(node), admin, admin_key, host_keys[node])
        return yaml.safe_load(seed.meta_data)["instance-id"]
    assert instance_id("cp-1") == instance_id("cp-1")
    assert instance_id("cp-1").startswith("single-master-cp-1-")
    assert instance_id("cp-1") != instance_id("worker-1")
    assert instance_id("cp-1", admin_key=ADMIN_KEY.replace("me: #1", "other")) != instance_id("cp-1")
    assert instance_id("cp-1", admin="operator") != instance_id("cp-1")
    moved = topology.load("single-master", {"network": {"first_host": 40}})
    assert cloudinit.render(moved, moved.node("cp-1"), "kubestrata", ADMIN_KEY,
                            host_keys["cp-1"]).digest != cloudinit.render(
        topo, topo.node("cp-1"), "kubestrata", ADMIN_KEY, host_keys["cp-1"]).digest


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="needs isoinfo (genisoimage)")
def test_the_seed_iso_is_private_and_nocloud_finds_it(keys, tmp_path):
    topo = topology.load("all-in-one")
    node = topo.nodes[0]
    seed = cloudinit.render(topo, node, "kubestrata", ADMIN_KEY, keys(topo)[node.name])
    iso = tmp_path / "private" / "node-1.iso"
    seed.write_iso(iso)
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600
    assert [p.name for p in iso.parent.iterdir()] == ["node-1.iso"], "no file is left beside it"
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True,
                          check=True).stdout
    assert "Volume id: cidata" in info                # NoCloud's label

    def read(name):
        return subprocess.run(["isoinfo", "-J", "-i", str(iso), "-x", f"/{name}"],
                              capture_output=True, text=True, check=True).stdout
    assert (read("user-data"), read("meta-data"), read("network-config")) == \
        (seed.user_data, seed.meta_data, seed.network_config)


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


# -- the host preflight: what the machine running Pulumi lacks, before anything is made --------

@pytest.fixture
def daemon(tmp_path):
    """A unix socket that answers, as libvirtd's does; returns its path."""
    import socket
    path = tmp_path / "libvirt-sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    yield str(path)
    server.close()


def _settings(uri: str, **more) -> vms.Settings:
    return vms.Settings(ssh_public_key=ADMIN_KEY, uri=uri, **more)


def test_preflight_passes_on_a_ready_machine(daemon, monkeypatch):
    monkeypatch.setattr(vms.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(vms, "host_routes", lambda: [])
    assert vms.preflight(topology.load("all-in-one"),
                         _settings(f"qemu:///system?socket={daemon}", domain_type="qemu")) == []


def test_preflight_names_the_missing_tools(daemon, monkeypatch):
    monkeypatch.setattr(vms.shutil, "which", lambda tool: None)
    monkeypatch.setattr(vms, "host_routes", lambda: [])
    problems = vms.preflight(topology.load("all-in-one"),
                             _settings(f"qemu:///system?socket={daemon}", domain_type="qemu"))
    assert problems == [
        "mkisofs: not found on this machine; kubestrata builds the VMs' cloud-init seeds with "
        "it: apt-get install genisoimage",
        "xsltproc: not found on this machine; the libvirt provider transforms the domains', "
        "volumes' and pool's XML with it: apt-get install xsltproc"]


def test_preflight_finds_a_daemon_missing_or_silent(tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(vms, "host_routes", lambda: [])
    topo = topology.load("all-in-one")
    missing = tmp_path / "none"
    [problem] = vms.preflight(topo, _settings(f"qemu:///system?socket={missing}",
                                              domain_type="qemu"))
    assert problem.startswith(f"libvirt URI qemu:///system?socket={missing}: no libvirt daemon "
                              f"on this machine ({missing} is missing)")
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent"))              # the file is there, nobody listens
    [problem] = vms.preflight(topo, _settings(f"qemu:///system?socket={tmp_path / 'silent'}",
                                              domain_type="qemu"))
    silent.close()
    assert f"no daemon answers on {tmp_path / 'silent'} (Connection refused)" in problem
    monkeypatch.setattr(vms, "SYSTEM_SOCKETS", (str(missing), str(tmp_path / "also-none")))
    [problem] = vms.preflight(topo, _settings("qemu:///system", domain_type="qemu"))
    assert f"({missing} or {tmp_path / 'also-none'} is missing)" in problem
    # A remote hypervisor is the provider's to reach, a session daemon starts when asked.
    assert vms.preflight(topo, _settings("qemu+ssh://admin@kvm2/system")) == []
    assert vms.preflight(topo, _settings("qemu:///session", domain_type="qemu")) == []


def test_preflight_wants_kvm_for_kvm_domains(daemon, monkeypatch):
    monkeypatch.setattr(vms, "host_routes", lambda: [])
    exists = vms.os.path.exists
    monkeypatch.setattr(vms.os.path, "exists", lambda path: path != "/dev/kvm" and exists(path))
    topo = topology.load("all-in-one")
    [problem] = vms.preflight(topo, _settings(f"qemu:///system?socket={daemon}"))
    assert problem.startswith("kubestrata:domainType: kvm, but this machine has no /dev/kvm")
    assert vms.preflight(topo, _settings(f"qemu:///system?socket={daemon}",
                                         domain_type="qemu")) == []


def test_preflight_refuses_a_network_that_a_route_covers(daemon, monkeypatch, tmp_path):
    topo = topology.load("all-in-one")                     # 10.40.1.0/24
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"          # default
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"          # 192.0.2.0/24
        f"{vms.bridge_name(topo)}\t0001280A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "wg0\t0000280A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")          # 10.40.0.0/16
    monkeypatch.setattr(vms, "ROUTES", routes)
    assert [(device, str(net)) for device, net in vms.host_routes()] == [
        ("eth0", "0.0.0.0/0"), ("eth0", "192.0.2.0/24"), (vms.bridge_name(topo), "10.40.1.0/24"),
        ("wg0", "10.40.0.0/16")]
    settings = _settings(f"qemu:///system?socket={daemon}", domain_type="qemu")
    assert vms.preflight(topo, settings) == [
        "network.cidr: 10.40.1.0/24 overlaps 10.40.0.0/16, routed to wg0 on this machine, and "
        "libvirt would refuse the NAT network; choose a network.cidr that no route of this "
        "machine covers"]
    assert vms.preflight(topo, _settings(f"qemu:///system?socket={daemon}", domain_type="qemu",
                                         bridge="br0")) == [], "a host bridge is the LAN's"


def test_preflight_wants_room_in_the_pool_for_each_new_vms_first_boot(daemon, monkeypatch, tmp_path):
    """Thin disks: the need is FIRST_BOOT_GIB per disk not yet in the pool, not the disks' size."""
    monkeypatch.setattr(vms, "host_routes", lambda: [])
    topo = topology.load("single-master")
    pool = tmp_path / "pool"
    settings = _settings(f"qemu:///system?socket={daemon}", domain_type="qemu",
                         pool_path=str(pool))
    free = {"bytes": 5 * 2 ** 30}
    usage = shutil.disk_usage
    monkeypatch.setattr(vms.shutil, "disk_usage", lambda path: usage(path)._replace(
        free=free["bytes"]))
    [problem] = vms.preflight(topo, settings)
    assert problem == (f"kubestrata:poolPath: {pool} has 5.0 GiB free, and the 3 new VMs need "
                       "about 6 GiB at first (2 GiB each for cloud-init, packages and images; "
                       "their disks can grow to 60 GiB); free space there, or set poolPath on a "
                       "larger filesystem")
    pool.mkdir()
    (pool / "cp-1.qcow2").touch()
    (pool / "worker-1-r1.qcow2").touch()
    assert vms.preflight(topo, settings) == [], "one new VM: 2 GiB"
    free["bytes"] = 2 ** 30
    [problem] = vms.preflight(topo, settings)
    assert "the 1 new VMs need about 2 GiB" in problem
    assert vms.preflight(topo, _settings("qemu+ssh://admin@kvm2/system",
                                         pool_path=str(pool))) == [], "a remote pool's own"
