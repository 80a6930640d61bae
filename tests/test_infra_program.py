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

from kubestrata import paths, topology, vmimage, vms

INFRA = paths.PROJECT_ROOT / "infra"
GIB = 1024 ** 3
ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin@test"
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
NETWORK = "libvirt:index/network:Network"
PROVIDER = "pulumi:providers:libvirt"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[mocks.MockResourceArgs] = []
        self.options: dict[str, dict] = {}      # replacement options by resource name

    def new_resource(self, args):
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}, None


class OptionsMonitor(mocks.MockMonitor):
    """The mocks' monitor, keeping also each resource's replacement options."""

    def RegisterResource(self, request):
        self.mocks.options[request.name] = {
            "delete_before_replace": request.deleteBeforeReplace,
            "replace_on_changes": list(request.replaceOnChanges), "protect": request.protect,
            "ignore_changes": list(request.ignoreChanges)}
        return super().RegisterResource(request)


@dataclass
class Run:
    resources: list[mocks.MockResourceArgs]
    outputs: dict
    options: dict[str, dict]

    def of_type(self, typ: str) -> dict[str, mocks.MockResourceArgs]:
        return {r.name: r for r in self.resources if r.typ == typ}

    def domains(self, topo) -> dict[str, dict]:
        """Domain inputs by node name."""
        by_domain_name = {r.inputs["name"]: r.inputs for r in self.of_type(DOMAIN).values()}
        return {n.name: by_domain_name[vms.domain_name(topo, n)] for n in topo.nodes}

    def seeds(self, topo) -> dict[str, mocks.MockResourceArgs]:
        """The seed volume of each node."""
        volumes = self.of_type(VOLUME)
        return {n.name: volumes[f"{n.name}-seed"] for n in topo.nodes}


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
                recorder: Recorder | None = None, stack_name: str | None = None) -> Run:
    """infra/ with stack's stack file (extra on top), as stack stack_name (default: stack)."""
    config = {**stack_config(stack), "kubestrata:sshPublicKey": ADMIN_KEY, **(extra or {})}
    pulumi.runtime.set_all_config(config)
    settings.set_root_resource(None)
    recorder = recorder or Recorder()
    mocks.set_mocks(recorder, project="kubestrata", stack=stack_name or stack, preview=preview,
                    monitor=OptionsMonitor(recorder))
    outputs: dict = {}

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(INFRA), run_name="__main__")
        return pulumi.Output.all(**settings.get_root_resource().outputs).apply(outputs.update)

    program()
    return Run(recorder.resources, outputs, recorder.options)


PREFLIGHT, FETCH = vms.preflight, vmimage.fetch


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")
    # No libvirtd here: this machine passes the host preflight (tests/test_cloudinit.py), and
    # has the image in its cache (tests/test_vmimage.py downloads one).
    monkeypatch.setattr(vms, "preflight", lambda topology, settings: [])
    monkeypatch.setattr(vmimage, "fetch", lambda url, checksum, log: vmimage.cached(url, checksum))


def test_an_image_that_cannot_be_had_stops_the_program_before_anything_is_made(monkeypatch):
    monkeypatch.setattr(vmimage, "fetch", FETCH)
    unreachable = {"kubestrata:image": "http://127.0.0.1:9/debian.qcow2",
                   "kubestrata:imageChecksum": "sha256:" + "0" * 64}
    recorder = Recorder()
    with pytest.raises(pulumi.RunError, match=r"^kubestrata:image: http://127.0.0.1:9/debian.qcow2 "
                                              r"cannot be downloaded \(.*refused\)"):
        run_program("all-in-one", unreachable, recorder=recorder)
    assert recorder.resources == []
    run_program("all-in-one", unreachable, preview=True)       # a preview downloads nothing


def test_what_this_machine_lacks_stops_the_program_before_anything_is_made(monkeypatch):
    monkeypatch.setattr(vms, "preflight", PREFLIGHT)
    recorder = Recorder()
    with pytest.raises(pulumi.RunError, match=r"libvirt URI qemu:///system\?socket=/nonexistent: "
                                              "no libvirt daemon on this machine"):
        run_program("all-in-one", {"kubestrata:libvirtUri": "qemu:///system?socket=/nonexistent",
                                   "kubestrata:domainType": "qemu"}, recorder=recorder)
    assert recorder.resources == []
    assert not paths.STATE_DIR.exists()


def base_volumes(run: Run) -> list[mocks.MockResourceArgs]:
    return [v for name, v in run.of_type(VOLUME).items() if name.endswith("-base-image")]


def seed_file(seed: mocks.MockResourceArgs, name: str) -> str:
    """A file of the seed ISO the program made (user-data, meta-data or network-config)."""
    return subprocess.run(["isoinfo", "-J", "-i", seed.inputs["source"], "-x", f"/{name}"],
                          capture_output=True, text=True, check=True).stdout


def user_data(seed: mocks.MockResourceArgs) -> str:
    return seed_file(seed, "user-data")


# The machines each stack makes, as the source document's four installation types have them.
STACK_NODES = {
    "all-in-one": ["node-1"],
    "single-master": ["cp-1", "worker-1", "worker-2"],
    "multi-master": ["etcd-1", "cp-1", "cp-2", "cp-3", "worker-1", "worker-2"],
    "ha-external-etcd": ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "cp-3", "worker-1",
                         "worker-2"],
}


@pytest.mark.parametrize("stack", topology.NAMES)
def test_each_stack_registers_a_domain_disk_and_seed_per_node_all_on_its_hypervisors_provider(stack):
    run = run_program(stack)
    nodes = STACK_NODES[stack]
    libvirt = [r for r in run.resources if r.typ.startswith("libvirt:")]
    assert sorted(r.name for r in libvirt) == sorted(
        [f"{n}-{part}" for n in nodes for part in ("domain", "disk", "seed")]
        + ["qemu-system-base-image", "qemu-system-network", "qemu-system-pool"])
    assert {r.name: r.typ for r in libvirt if r.name.endswith("-domain")} == \
        {f"{n}-domain": DOMAIN for n in nodes}
    assert {r.typ for r in libvirt if r.name.endswith(("-disk", "-seed", "-base-image"))} == {VOLUME}
    [provider] = run.of_type(PROVIDER)
    assert {r.provider.rpartition("::")[2] for r in libvirt} == {f"{provider}-id"}


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
    seeds = run.seeds(topo)
    addresses = {}
    for node in topo.nodes:
        config = yaml.safe_load(seed_file(seeds[node.name], "network-config"))
        interface = ipaddress.ip_interface(config["ethernets"]["eth0"]["addresses"][0])
        assert interface.network == topo.network
        addresses[node.name] = str(interface.ip)
        assert inventory_hosts[node.name]["ansible_host"] == str(interface.ip)
        assert inventory_hosts[node.name]["node_address"] == str(interface.ip)
    assert len(set(addresses.values())) == len(topo.nodes)
    network = next(iter(run.of_type(NETWORK).values())).inputs
    assert network["addresses"] == [str(topo.network)]
    assert network["mode"] == "nat"
    assert network["bridge"] == vms.bridge_name(topo)         # its route is the network's own
    assert {h["hostname"]: h["ip"] for h in network["dns"]["hosts"]} == addresses


@pytest.mark.parametrize("stack", topology.NAMES)
def test_each_disk_is_a_copy_on_write_volume_of_the_base_image(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    volumes = run.of_type(VOLUME)
    bases = base_volumes(run)
    assert len(bases) == 1
    image = stack_config(stack).get("kubestrata:image", vms.DEFAULT_IMAGE)
    assert bases[0].inputs["source"] == str(vmimage.cached(image, None))   # downloaded here
    assert bases[0].inputs["name"] == "debian-13-generic-amd64.qcow2"
    for node, domain in run.domains(topo).items():
        disk, _ = domain["disks"]
        volume = volumes[f"{node}-disk"]
        assert disk["volumeId"] == f"{volume.name}-id"
        assert volume.inputs["baseVolumeId"] == f"{bases[0].name}-id"
        assert volume.inputs["format"] == "qcow2"
        assert volume.inputs["pool"] == bases[0].inputs["pool"]


@pytest.mark.parametrize("stack", topology.NAMES)
def test_cloud_init_carries_key_static_address_and_no_password(stack):
    topo = stack_topology(stack)
    run = run_program(stack)
    seeds = run.seeds(topo)
    known_hosts = vms.known_hosts_path(topo).read_text().splitlines()
    for node, domain in run.domains(topo).items():
        seed = seeds[node]
        assert domain["disks"][1] == {"volumeId": f"{seed.name}-id"}
        assert seed.inputs["source"] == str(vms.seed_path(topo, topo.node(node)))
        assert seed.inputs["format"] == "raw"
        instance_id = yaml.safe_load(seed_file(seed, "meta-data"))["instance-id"]
        assert seed.inputs["name"] == f"{node}-seed-{instance_id.rsplit('-', 1)[1]}.iso"
        data = yaml.safe_load(user_data(seed))
        [admin] = data["users"]
        assert admin["ssh_authorized_keys"] == [ADMIN_KEY]
        assert admin["lock_passwd"] is True and data["ssh_pwauth"] is False
        assert not _password_keys(data), f"{node}: user-data sets a password"
        assert data["hostname"] == node
        assert f"{node},{node}.{topo.domain},{topo.node(node).address} " \
               f"{data['ssh_keys']['ed25519_public']}" in known_hosts
        ethernet = yaml.safe_load(seed_file(seed, "network-config"))["ethernets"]["eth0"]
        assert ethernet["addresses"] == [f"{topo.node(node).address}/{topo.network.prefixlen}"]
        assert ethernet["match"]["macaddress"] == domain["networkInterfaces"][0]["mac"].lower()


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
    assert len(base_volumes(run)) == 2, "a base image per host"


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
    for node in topo.nodes:           # where `kubestrata console` finds the serial console
        host = written["all"]["hosts"][node.name]
        assert (host["libvirt_uri"], host["libvirt_domain"]) == (
            "qemu:///system", f"{topo.name}-{node.name}")


def test_a_preview_writes_no_inventory():
    run_program("all-in-one", preview=True)
    assert not (paths.INVENTORY_DIR / "libvirt").exists()


def test_host_keys_are_stable_across_runs_and_kept_private():
    first = run_program("multi-master")
    second = run_program("multi-master")
    def public_keys(run):
        return {name: yaml.safe_load(user_data(seed))["ssh_keys"]["ed25519_public"]
                for name, seed in run.seeds(stack_topology("multi-master")).items()}
    assert public_keys(first) == public_keys(second)
    assert len(set(public_keys(first).values())) == len(stack_topology("multi-master").nodes)
    state = vms.state_dir("multi-master")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    key_files = list(state.glob("*_ed25519"))
    assert len(key_files) == len(stack_topology("multi-master").nodes)
    for private_file in [*key_files, *state.glob("seeds/*.iso")]:
        assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    for key_file in key_files:
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


# The XML the provider gives libvirt for a volume and a pool (terraform-provider-libvirt 0.8).
PROVIDER_VOLUME_XML = """<volume><name>node-1.qcow2</name><capacity unit="bytes">1</capacity>
<target><format type="qcow2"></format><permissions><mode>644</mode></permissions></target>
<backingStore><path>/p/base.qcow2</path><format type="qcow2"></format></backingStore></volume>"""
PROVIDER_POOL_XML = """<pool type="dir"><name>kubestrata-x</name>
<target><path>/var/lib/libvirt/images/kubestrata-x</path></target></pool>"""


def _transform(tmp_path, stylesheet: str, document: str):
    import xml.etree.ElementTree as ElementTree
    (tmp_path / "t.xsl").write_text(stylesheet)
    (tmp_path / "d.xml").write_text(document)
    return ElementTree.fromstring(subprocess.run(
        ["xsltproc", str(tmp_path / "t.xsl"), str(tmp_path / "d.xml")],
        capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(shutil.which("xsltproc") is None, reason="needs xsltproc (apt-get install "
                    "xsltproc), which the libvirt provider runs for xml.xslt")
def test_volumes_are_0600_and_the_pool_0711_on_the_hypervisor(tmp_path):
    """The provider makes volumes 0644, and a seed holds its node's private host key."""
    run = run_program("single-master")
    volumes = run.of_type(VOLUME)
    assert len(volumes) == 1 + 2 * len(stack_topology("single-master").nodes)
    [pool] = run.of_type("libvirt:index/pool:Pool").values()
    [volume_xslt] = {v.inputs["xml"]["xslt"] for v in volumes.values()}
    volume = _transform(tmp_path, volume_xslt, PROVIDER_VOLUME_XML)
    assert volume.find("target/permissions/mode").text == "0600"
    assert volume.find("target/format").get("type") == "qcow2"
    assert volume.find("backingStore/path").text == "/p/base.qcow2"
    pool_xml = _transform(tmp_path, pool.inputs["xml"]["xslt"], PROVIDER_POOL_XML)
    assert pool_xml.find("target/permissions/mode").text == "0711"
    assert pool_xml.find("target/path").text == "/var/lib/libvirt/images/kubestrata-x"


def test_no_private_key_reaches_pulumis_state():
    """The seed goes to Pulumi as the path of an ISO made here, not as its content."""
    run = run_program("multi-master")
    assert "PRIVATE KEY" not in json.dumps([r.inputs for r in run.resources], default=str)
    assert all("PRIVATE KEY" in user_data(seed)
               for seed in run.seeds(stack_topology("multi-master")).values())


def test_a_new_seed_or_network_replaces_the_domain_the_old_one_first():
    topo = stack_topology("single-master")
    run = run_program("single-master")
    for node in topo.nodes:
        assert run.options[f"{node.name}-domain"] == {
            "delete_before_replace": True, "replace_on_changes": ["networkInterfaces"],
            "protect": False, "ignore_changes": []}
        # As a refresh reads them back: no replacement for a letter's case or the ISO's format.
        assert run.domains(topo)[node.name]["networkInterfaces"][0]["mac"] == \
            vms.mac_address(topo, node).upper()
        assert run.options[f"{node.name}-seed"]["ignore_changes"] == ["format"]

    def names(run, kind):
        return {node: run.of_type(VOLUME)[f"{node}-{kind}"].inputs["name"]
                for node in ("cp-1", "worker-1", "worker-2")}
    # Another admin key: every seed is new (the domains' disks change: a new domain each).
    rekeyed = run_program("single-master", {"kubestrata:sshPublicKey": ADMIN_KEY + "2"})
    assert all(names(rekeyed, "seed")[n] != names(run, "seed")[n] for n in names(run, "seed"))
    assert names(rekeyed, "disk") == names(run, "disk")
    # A third worker: the other nodes' seeds stay as they are.
    scaled = run_program("single-master", {"kubestrata:overrides": json.dumps(
        {"node_groups": {"worker": {"count": 3}}})})
    assert names(scaled, "seed") == names(run, "seed")


def test_protect_disks_protects_the_etcd_and_control_plane_disks_only():
    topo = stack_topology("multi-master")
    assert not any(options["protect"] for options in run_program("multi-master").options.values())
    protected = run_program("multi-master", {"kubestrata:overrides": json.dumps(
        {"protect_disks": True})}).options
    assert sorted(name for name, options in protected.items() if options["protect"]) == sorted(
        f"{n.name}-disk" for n in topo.nodes if n.has("etcd") or n.has("control_plane"))
    assert topo.with_role("worker") and topo.with_role("etcd") != topo.with_role("control_plane")


def test_a_stack_named_otherwise_than_its_topology_is_refused():
    """VMs, host keys and the inventory follow the topology's name; a second stack of one
    topology would share them."""
    recorder = Recorder()
    with pytest.raises(pulumi.RunError, match="pulumi stack dev: runs topology all-in-one, .*"
                                              r"\(pulumi stack select all-in-one\)"):
        run_program("all-in-one", recorder=recorder, stack_name="dev")
    assert recorder.resources == []
    assert not paths.STATE_DIR.exists(), "no host key is made for it"


def _base_volume(run: Run) -> dict:
    [base] = base_volumes(run)
    return base.inputs


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


# -- a node's machine replaced (kubestrata replace, issue 13 §3) -------------------------------

def test_a_renewed_node_gets_a_new_disk_and_a_seed_with_a_new_host_key():
    """vms.renew: the node's disk is named anew (the provider makes a new volume for a new
    name) and its seed carries a new host key, so its domain is new too (on new disks, the old
    one deleted first: the test above); nothing else changes."""
    topo = stack_topology("ha-external-etcd")

    def machines() -> dict[str, tuple[str, str, str]]:
        """Each node's disk and seed volume names and host key (read now: the seed ISO is
        rewritten by the next run)."""
        run = run_program("ha-external-etcd")
        volumes = run.of_type(VOLUME)
        return {n.name: (volumes[f"{n.name}-disk"].inputs["name"],
                         volumes[f"{n.name}-seed"].inputs["name"],
                         yaml.safe_load(user_data(run.seeds(topo)[n.name]))["ssh_keys"][
                             "ed25519_public"]) for n in topo.nodes}
    before = machines()
    vms.renew("ha-external-etcd", "cp-2")
    after = machines()
    vms.renew("ha-external-etcd", "cp-2")
    again = machines()
    assert [m["cp-2"][0] for m in (before, after, again)] == \
        ["cp-2.qcow2", "cp-2-r1.qcow2", "cp-2-r2.qcow2"]
    assert len({m["cp-2"][1] for m in (before, after, again)}) == 3, "new seeds"
    assert len({m["cp-2"][2] for m in (before, after, again)}) == 3, "new host keys"
    known_hosts = vms.known_hosts_path(topo).read_text()
    assert again["cp-2"][2] in known_hosts and before["cp-2"][2] not in known_hosts
    assert {n: m for n, m in again.items() if n != "cp-2"} == \
        {n: m for n, m in before.items() if n != "cp-2"}
