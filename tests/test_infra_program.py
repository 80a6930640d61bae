"""The Pulumi program in infra/, run for each stack against pulumi's mocks (no engine, no libvirt).

Each run executes infra/__main__.py exactly as the engine would, records every resource it
registers with its inputs, and checks them against the topology the stack names.
"""

from __future__ import annotations

import ipaddress
import json
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks, settings

from kubestrata import paths, topology, vms

INFRA = paths.PROJECT_ROOT / "infra"
GIB = 1024 ** 3
ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin@test"
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"
NETWORK = "libvirt:index/network:Network"
PROVIDER = "pulumi:providers:libvirt"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[mocks.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}, None


@dataclass
class Run:
    resources: list[mocks.MockResourceArgs]
    outputs: dict

    def of_type(self, typ: str) -> dict[str, mocks.MockResourceArgs]:
        return {r.name: r for r in self.resources if r.typ == typ}

    def domains(self, topo) -> dict[str, dict]:
        """Domain inputs by node name."""
        by_domain_name = {r.inputs["name"]: r.inputs for r in self.of_type(DOMAIN).values()}
        return {n.name: by_domain_name[vms.domain_name(topo, n)] for n in topo.nodes}


def stack_config(stack: str) -> dict[str, str]:
    """The stack file's config as the engine hands it to the program (objects as JSON)."""
    config = yaml.safe_load((paths.PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in config.items()}


def stack_topology(stack: str, overrides: dict | None = None):
    config = yaml.safe_load((paths.PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return topology.load(config["kubestrata:topology"],
                         topology.merge(config.get("kubestrata:overrides") or {}, overrides or {}))


def run_program(stack: str, extra: dict | None = None, preview: bool = False,
                recorder: Recorder | None = None) -> Run:
    config = {**stack_config(stack), "kubestrata:sshPublicKey": ADMIN_KEY, **(extra or {})}
    pulumi.runtime.set_all_config(config)
    settings.set_root_resource(None)
    recorder = recorder or Recorder()
    mocks.set_mocks(recorder, project="kubestrata", stack=stack, preview=preview)
    outputs: dict = {}

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(INFRA), run_name="__main__")
        return pulumi.Output.all(**settings.get_root_resource().outputs).apply(outputs.update)

    program()
    return Run(recorder.resources, outputs)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")


def user_data(seed: mocks.MockResourceArgs) -> str:
    value = seed.inputs["userData"]
    rpc = pulumi.runtime.rpc
    assert isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig, \
        f"{seed.name}: user-data holds a private host key and must be a Pulumi secret"
    return value["value"]


@pytest.mark.parametrize("stack", topology.NAMES)
def test_one_domain_per_node_with_the_roles_counts(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    domains = run.domains(topo)
    assert len(run.of_type(DOMAIN)) == len(topo.nodes)
    for role in ("etcd", "control_plane", "worker", "lb"):
        expected = topo.with_role(role)
        assert len([n for n in topo.nodes if n.has(role) and n.name in domains]) == len(expected)


@pytest.mark.parametrize("stack", topology.NAMES)
def test_vcpus_memory_and_disk_follow_the_role(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    volumes = run.of_type(VOLUME)
    for node, domain in run.domains(topo).items():
        spec = topo.node(node)
        assert domain["vcpu"] == spec.cpus
        assert domain["memory"] == spec.memory_mib
        assert volumes[f"{node}-disk"].inputs["size"] == spec.disk_gib * GIB


def test_stack_overrides_change_the_sizes():
    topo = stack_topology("ha-external-etcd")
    assert topology.load("ha-external-etcd").node("etcd-1").memory_mib == 2048
    domains = run_program("ha-external-etcd").domains(topo)
    assert [domains[n.name]["memory"] for n in topo.with_role("etcd")] == [1024] * 3
    assert [domains[n.name]["memory"] for n in topo.with_role("control_plane")] == [2048] * 3


@pytest.mark.parametrize("stack", topology.NAMES)
def test_addresses_are_unique_inside_the_network_and_match_the_inventory(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    inventory_hosts = yaml.safe_load(run.outputs["inventory"])["all"]["hosts"]
    seeds = run.of_type(SEED)
    addresses = {}
    for node in topo.nodes:
        config = yaml.safe_load(seeds[f"{node.name}-cloud-init"].inputs["networkConfig"])
        interface = ipaddress.ip_interface(config["ethernets"]["eth0"]["addresses"][0])
        assert interface.network == topo.network
        addresses[node.name] = str(interface.ip)
        assert inventory_hosts[node.name]["ansible_host"] == str(interface.ip)
        assert inventory_hosts[node.name]["node_address"] == str(interface.ip)
    assert len(set(addresses.values())) == len(topo.nodes)
    network = next(iter(run.of_type(NETWORK).values())).inputs
    assert network["addresses"] == [str(topo.network)]
    assert network["mode"] == "nat"
    assert {h["hostname"]: h["ip"] for h in network["dns"]["hosts"]} == addresses


@pytest.mark.parametrize("stack", topology.NAMES)
def test_each_disk_is_a_copy_on_write_volume_of_the_base_image(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    volumes = run.of_type(VOLUME)
    bases = [v for v in volumes.values() if "source" in v.inputs]
    assert len(bases) == 1
    assert bases[0].inputs["source"] == stack_config(stack).get("kubestrata:image",
                                                                vms.DEFAULT_IMAGE)
    for node, domain in run.domains(topo).items():
        [disk] = domain["disks"]
        volume = volumes[f"{node}-disk"]
        assert disk["volumeId"] == f"{volume.name}-id"
        assert volume.inputs["baseVolumeId"] == f"{bases[0].name}-id"
        assert volume.inputs["format"] == "qcow2"
        assert volume.inputs["pool"] == bases[0].inputs["pool"]


@pytest.mark.parametrize("stack", topology.NAMES)
def test_cloud_init_carries_key_static_address_and_no_password(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    seeds = run.of_type(SEED)
    known_hosts = vms.known_hosts_path(topo).read_text().splitlines()
    for node, domain in run.domains(topo).items():
        seed = seeds[f"{node}-cloud-init"]
        assert domain["cloudinit"] == f"{seed.name}-id"
        data = yaml.safe_load(user_data(seed))
        [admin] = data["users"]
        assert admin["ssh_authorized_keys"] == [ADMIN_KEY]
        assert admin["lock_passwd"] is True and data["ssh_pwauth"] is False
        assert not _password_keys(data), f"{node}: user-data sets a password"
        assert data["hostname"] == node
        assert f"{node},{node}.{topo.domain},{topo.node(node).address} " \
               f"{data['ssh_keys']['ed25519_public']}" in known_hosts
        ethernet = yaml.safe_load(seed.inputs["networkConfig"])["ethernets"]["eth0"]
        assert ethernet["addresses"] == [f"{topo.node(node).address}/{topo.network.prefixlen}"]
        assert ethernet["match"]["macaddress"] == domain["networkInterfaces"][0]["mac"]


def _password_keys(value) -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "passw" in key or key in ("chpasswd", "plain_text_passwd", "hashed_passwd"):
                if key not in ("lock_passwd", "ssh_pwauth"):
                    found.append(key)
            found += _password_keys(item)
    elif isinstance(value, list):
        for item in value:
            found += _password_keys(item)
    return found


def test_domains_have_a_serial_console_and_static_addressing():
    topo = stack_topology("single-master")
    for domain in run_program("single-master").domains(topo).values():
        assert domain["consoles"] == [{"type": "pty", "targetType": "serial", "targetPort": "0"}]
        assert domain["qemuAgent"] is False       # the agent channel is the provider's default
        assert "waitForLease" not in domain["networkInterfaces"][0]


@pytest.mark.parametrize("overrides, message", [
    ({"node_groups": {"etcd": {"count": 2}}}, "odd count"),
    ({"node_groups": {"worker": {"memory_mib": 256}}}, "below the minimum"),
    ({"pods": {"node_prefix": 40}}, "between 8 and 28"),
    ({"network": {"gateway": "10.40.4.254"}}, "NAT network puts the host at 10.40.4.1"),
    ({"node_groups": {"worker": {"libvirt_uri": "qemu+ssh://admin@kvm2/system"}}},
     "a libvirt NAT network stays on its own host"),
])
def test_a_bad_topology_registers_no_resource_at_all(overrides, message):
    recorder = Recorder()
    with pytest.raises(pulumi.RunError, match=message) as error:
        run_program("ha-external-etcd", {"kubestrata:overrides": json.dumps(overrides)},
                    recorder=recorder)
    assert "topology ha-external-etcd cannot be used" in str(error.value)
    assert recorder.resources == []
    assert not paths.STATE_DIR.exists(), "no host key is made for a topology that is refused"


def test_a_missing_ssh_key_is_refused(monkeypatch):
    monkeypatch.setattr(vms, "default_public_key", lambda: None)
    with pytest.raises(pulumi.RunError, match="sshPublicKey"):
        run_program("all-in-one", {"kubestrata:sshPublicKey": ""})


def test_one_provider_per_hypervisor_uri():
    remote = "qemu+ssh://admin@kvm2.example/system?keyfile=/home/me/.ssh/id_ed25519"
    topo = stack_topology("single-master", {"node_groups": {"worker": {"libvirt_uri": remote}}})
    run = run_program("single-master", {
        "kubestrata:bridge": "br0",
        "kubestrata:overrides": json.dumps({"node_groups": {"worker": {"libvirt_uri": remote}}}),
    })
    providers = run.of_type(PROVIDER)
    assert sorted(p.inputs["uri"] for p in providers.values()) == sorted(["qemu:///system", remote])
    provider_of = {p.inputs["uri"]: f"::{name}::{name}-id" for name, p in providers.items()}
    for resource in run.resources:
        if resource.typ == DOMAIN:
            node = topo.node(resource.name.removesuffix("-domain"))
            uri = node.libvirt_uri or "qemu:///system"
            assert resource.provider.endswith(provider_of[uri]), resource.name
            assert resource.inputs["networkInterfaces"][0]["bridge"] == "br0"
    assert not run.of_type(NETWORK), "bridged nodes need no libvirt network"
    assert len([r for r in run.resources if "source" in r.inputs]) == 2, "a base image per host"


def test_editing_a_uris_parameters_renames_no_resource():
    def urns(keyfile: str) -> list[str]:
        uri = f"qemu+ssh://admin@kvm2.example:2222/system?keyfile={keyfile}&knownhosts=/k"
        run = run_program("single-master", {
            "kubestrata:bridge": "br0",
            "kubestrata:overrides": json.dumps({"node_groups": {"worker": {"libvirt_uri": uri}}})})
        return sorted(f"{r.typ}::{r.name}" for r in run.resources)
    before, after = urns("/home/me/.ssh/id_ed25519"), urns("/home/me/.ssh/other_key")
    assert before == after
    assert "pulumi:providers:libvirt::qemu-ssh-admin-kvm2-example-2222-system" in before


def test_a_socket_uri_gives_a_short_resource_name():
    run = run_program("all-in-one", {"kubestrata:libvirtUri": "qemu:///system?socket=/tmp/"
                                     "kubestrata-libvirt-x1y2z3/run/libvirt/libvirt-sock"})
    assert sorted(run.of_type(PROVIDER)) == ["qemu-system"]
    assert max(len(r.name) for r in run.resources) < 40


def test_uris_differing_only_in_parameters_are_refused():
    with pytest.raises(pulumi.RunError, match="differ only in their parameters"):
        run_program("single-master", {
            "kubestrata:bridge": "br0",
            "kubestrata:libvirtUri": "qemu+ssh://admin@kvm2/system?keyfile=/a",
            "kubestrata:overrides": json.dumps({"node_groups": {"worker": {
                "libvirt_uri": "qemu+ssh://admin@kvm2/system?keyfile=/b"}}})})


def test_a_local_images_volume_is_named_by_its_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for directory, content in (("a", b"one image"), ("b", b"one image")):
        (tmp_path / directory / "disk.qcow2").write_bytes(content)
    (tmp_path / "other.qcow2").write_bytes(b"another image")
    name = vms.image_volume_name(str(tmp_path / "a" / "disk.qcow2"))
    assert re.fullmatch(r"disk-[0-9a-f]{12}\.qcow2", name)
    assert vms.image_volume_name(str(tmp_path / "b" / "disk.qcow2")) == name    # moved: same
    assert vms.image_volume_name(f"file://{tmp_path / 'a' / 'disk.qcow2'}") == name
    (tmp_path / "b" / "disk.qcow2").write_bytes(b"a new build")
    assert vms.image_volume_name(str(tmp_path / "b" / "disk.qcow2")) != name   # changed: new
    assert vms.image_volume_name(vms.DEFAULT_IMAGE) == "debian-13-generic-amd64.qcow2"
    base = _base_volume(run_program("all-in-one", {
        "kubestrata:image": str(tmp_path / "a" / "disk.qcow2"), "kubestrata:imageFormat": "raw"}))
    assert base["name"] == name


def test_a_remote_nat_hypervisor_is_reached_through_ssh_jump():
    run = run_program("all-in-one", {"kubestrata:libvirtUri": "qemu+ssh://admin@kvm2:2222/system"})
    assert "-o ProxyJump=admin@kvm2:2222" in run.outputs["ssh"]["node-1"]
    hosts = yaml.safe_load(run.outputs["inventory"])["all"]["hosts"]
    assert "ProxyJump=admin@kvm2:2222" in hosts["node-1"]["ansible_ssh_common_args"]


@pytest.mark.parametrize("stack", topology.NAMES)
def test_inventory_and_known_hosts_land_next_to_each_other(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    directory = paths.INVENTORY_DIR / "libvirt" / topo.name
    assert run.outputs["inventoryFile"] == str(directory / "hosts.yml")
    written = yaml.safe_load((directory / "hosts.yml").read_text())
    assert written == yaml.safe_load(run.outputs["inventory"])
    assert written["all"]["vars"]["ansible_user"] == "kubestrata"
    assert written["all"]["vars"]["ansible_become"] is True      # root is refused over SSH
    for name, host in written["all"]["hosts"].items():
        assert host["ansible_ssh_common_args"] == (
            f"-o UserKnownHostsFile={directory / 'known_hosts'} -o StrictHostKeyChecking=yes")
        assert run.outputs["ssh"][name].endswith(
            f"-o StrictHostKeyChecking=yes kubestrata@{topo.node(name).address}")
    assert len((directory / "known_hosts").read_text().splitlines()) == len(topo.nodes)


def test_a_preview_writes_no_inventory():
    run_program("all-in-one", preview=True)
    assert not (paths.INVENTORY_DIR / "libvirt").exists()


def test_host_keys_are_stable_across_runs_and_kept_private():
    first = run_program("multi-master")
    second = run_program("multi-master")
    def public_keys(run):
        return {name: yaml.safe_load(user_data(seed))["ssh_keys"]["ed25519_public"]
                for name, seed in run.of_type(SEED).items()}
    assert public_keys(first) == public_keys(second)
    assert len(set(public_keys(first).values())) == len(first.of_type(SEED))
    state = vms.state_dir("multi-master")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for key_file in state.iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text() not in json.dumps(first.outputs)


# -- domain type, graphics, console log, image format, SSH proxy (issue 14 §2/§3) -------------

def test_domains_are_kvm_with_the_host_cpu_by_default():
    topo = stack_topology("all-in-one")
    [domain] = run_program("all-in-one").domains(topo).values()
    assert domain["type"] == "kvm"
    assert domain["cpu"] == {"mode": "host-passthrough"}


def test_domain_type_qemu_is_software_emulation_without_host_cpu():
    topo = stack_topology("single-master")
    domains = run_program("single-master", {"kubestrata:domainType": "qemu"}).domains(topo)
    for domain in domains.values():
        assert domain["type"] == "qemu"
        assert "cpu" not in domain, "TCG cannot pass the host CPU through"


def test_an_unknown_domain_type_is_refused_before_anything_is_made():
    recorder = Recorder()
    with pytest.raises(pulumi.RunError, match=r"kubestrata:domainType: 'xen' .* use kvm .* or "
                                              r"qemu"):
        run_program("all-in-one", {"kubestrata:domainType": "xen"}, recorder=recorder)
    assert recorder.resources == []


def test_domains_have_vnc_on_loopback_and_a_console_log_file():
    topo = stack_topology("multi-master")
    for node, domain in run_program("multi-master").domains(topo).items():
        assert domain["graphics"] == {"type": "vnc", "listenType": "address",
                                      "listenAddress": "127.0.0.1", "autoport": True}
        assert domain["consoles"] == [{"type": "pty", "targetType": "serial", "targetPort": "0"}]
        log = f"/var/log/libvirt/qemu/multi-master-{node}-console.log"
        assert vms.console_log(topo, topo.node(node)) == log
        assert f'<log file="{log}" append="on"/>' in domain["xml"]["xslt"]


PROVIDER_DOMAIN_XML = """<domain type="qemu"><name>n</name><devices>
<console type="pty"><target type="serial" port="0"></target></console>
<channel type="unix"><target type="virtio" name="org.qemu.guest_agent.0"></target></channel>
</devices></domain>"""


@pytest.mark.skipif(shutil.which("xsltproc") is None, reason="needs xsltproc (apt-get install "
                    "xsltproc), which the libvirt provider runs for xml.xslt")
def test_the_console_log_transform_adds_a_log_to_the_serial_console_only(tmp_path):
    import xml.etree.ElementTree as ElementTree
    sys.path.insert(0, str(INFRA))
    try:
        import cluster
    finally:
        sys.path.remove(str(INFRA))
    (tmp_path / "t.xsl").write_text(cluster.console_log_xslt("/var/log/libvirt/qemu/x.log"))
    (tmp_path / "d.xml").write_text(PROVIDER_DOMAIN_XML)
    out = subprocess.run(["xsltproc", str(tmp_path / "t.xsl"), str(tmp_path / "d.xml")],
                         capture_output=True, text=True, check=True).stdout
    devices = ElementTree.fromstring(out).find("devices")
    [console] = devices.findall("console")
    assert console.find("log").attrib == {"file": "/var/log/libvirt/qemu/x.log", "append": "on"}
    assert console.find("target").attrib == {"type": "serial", "port": "0"}
    assert devices.find("channel/log") is None


def _base_volume(run: Run) -> dict:
    [base] = [v.inputs for v in run.of_type(VOLUME).values() if "source" in v.inputs]
    return base


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)")
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_local_image_gives_its_own_format_to_the_base_volume(tmp_path, fmt):
    image = tmp_path / f"debian.{'img' if fmt == 'qcow2' else 'qcow2'}"    # the name misleads
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "16M"], check=True)
    assert vms.image_format(str(image)) == fmt
    base = _base_volume(run_program("all-in-one", {"kubestrata:image": str(image)}))
    assert (base["source"], base["format"]) == (str(image), fmt)


def test_image_format_without_qemu_img_reads_the_magic_number(tmp_path, monkeypatch):
    monkeypatch.setattr(vms.shutil, "which", lambda name: None)
    (tmp_path / "a").write_bytes(b"QFI\xfb" + bytes(100))
    (tmp_path / "b").write_bytes(bytes(104))
    assert [vms.image_format(str(tmp_path / n)) for n in "ab"] == ["qcow2", "raw"]


def test_image_format_of_a_url_comes_from_its_suffix_and_config_wins():
    assert vms.image_format(vms.DEFAULT_IMAGE) == "qcow2"
    assert vms.image_format("https://example.org/debian-13-nocloud-amd64.raw") == "raw"
    assert _base_volume(run_program("all-in-one"))["format"] == "qcow2"
    base = _base_volume(run_program("all-in-one", {"kubestrata:imageFormat": "raw"}))
    assert base["format"] == "raw"


def test_an_image_libvirt_volumes_cannot_take_is_refused():
    with pytest.raises(pulumi.RunError, match="is a vmdk image; .* qemu-img convert -O qcow2"):
        run_program("all-in-one", {"kubestrata:imageFormat": "vmdk"})


PROXY = "ip netns exec ksvirt-test /opt/venv/bin/python -m kubestrata.lab.proxy %h %p"


def test_ssh_proxy_command_reaches_the_inventory_and_the_ssh_lines():
    topo = stack_topology("single-master")
    run = run_program("single-master", {"kubestrata:sshProxyCommand": PROXY,
                                        "kubestrata:libvirtUri": "qemu+ssh://admin@kvm2/system"})
    hosts = yaml.safe_load(run.outputs["inventory"])["all"]["hosts"]
    for node in topo.nodes:
        args = shlex.split(hosts[node.name]["ansible_ssh_common_args"])
        assert args[-2:] == ["-o", f"ProxyCommand={PROXY}"]
        assert not any("ProxyJump" in arg for arg in args), "the proxy replaces the jump host"
        line = shlex.split(run.outputs["ssh"][node.name])
        assert line[-3:] == ["-o", f"ProxyCommand={PROXY}", f"kubestrata@{node.address}"]


def test_ssh_proxy_command_without_the_host_is_refused():
    with pytest.raises(pulumi.RunError, match="kubestrata:sshProxyCommand: .* %h"):
        run_program("all-in-one", {"kubestrata:sshProxyCommand": "nc 10.0.0.1 22"})
