"""libvirt boots the cloud-style image as infra/ would have it, without Pulumi (issue 14 §2).

Against the private libvirtd (tests/vm/libvirt_host.py), with virsh, the objects the program's
resources make for all-in-one's node: the NAT network of the topology's CIDR (no DHCP, a DNS
entry for the node), a pool, the base volume (uploaded, in the format qemu-img reads), a
copy-on-write disk of the node's size over it, the NoCloud seed ISO the program renders (made
with mkisofs as the provider does), and a domain of type qemu as the provider writes it, VNC on
127.0.0.1 and the serial console logged through infra's own XSLT. Then, as `kubestrata up`
does, from the inventory the program writes: an SSH login (through `ip netns exec` as the
stack's sshProxyCommand, host key pinned by known_hosts) and cloud-init done; the checks of
what cloud-init applied; and everything destroyed, as `pulumi destroy` would.

The VM has 1 GiB and 2 vCPUs (the topology's 4 GiB are not needed to boot).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from kubestrata import cloudinit, hostkeys, paths, providers, remote, topology, vms
from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]

NODE = "node-1"
MEMORY_MIB = 1024
CPUS = 2
BOOT_TIMEOUT = 600.0
INFRA = paths.PROJECT_ROOT / "infra"


def _cluster_module():
    sys.path.insert(0, str(INFRA))
    try:
        import cluster
    finally:
        sys.path.remove(str(INFRA))
    return cluster


def network_xml(topo) -> str:
    """What ClusterNetwork's libvirt.Network makes: NAT, the host at the network's first
    address, no DHCP, local DNS answering for every node."""
    hosts = "".join(f"<host ip='{node.address}'><hostname>{node.name}</hostname></host>"
                    for node in topo.nodes)
    return (f"<network><name>{vms.network_name(topo)}</name><forward mode='nat'/>"
            f"<domain name='{topo.domain}' localOnly='yes'/><dns enable='yes'>{hosts}</dns>"
            f"<ip address='{topo.network[1]}' prefix='{topo.network.prefixlen}'/></network>")


def domain_xml(topo, node, arguments: dict, disk: str, seed: str) -> str:
    """The domain as terraform-provider-libvirt 0.8 writes it for NodeVM's arguments, before
    the xml.xslt transform (guest-agent channel included, cloud-init seed as IDE cdrom)."""
    graphics = arguments["graphics"]
    assert graphics["listen_type"] == "address" and graphics["autoport"]
    return f"""<domain type='{arguments["type"]}'>
  <name>{vms.domain_name(topo, node)}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>{CPUS}</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <features><pae/><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{escape(disk)}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{escape(seed)}'/><target dev='hdd' bus='ide'/><serial>cloudinit</serial></disk>
    <interface type='network'><mac address='{vms.mac_address(topo, node)}'/>
      <source network='{vms.network_name(topo)}'/><model type='virtio'/></interface>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='{graphics["type"]}' autoport='yes'>
      <listen type='address' address='{graphics["listen_address"]}'/></graphics>
  </devices>
</domain>
"""


def _transform(xml: str, xslt: str, workdir: Path) -> str:
    """xml.xslt as the provider applies it: xsltproc on the machine running Pulumi."""
    (workdir / "domain.xsl").write_text(xslt)
    (workdir / "domain.in.xml").write_text(xml)
    return subprocess.run(["xsltproc", str(workdir / "domain.xsl"),
                           str(workdir / "domain.in.xml")], capture_output=True, text=True,
                          check=True, timeout=60).stdout


@pytest.fixture
def private_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")
    return tmp_path


def test_libvirt_boots_the_image_and_cloud_init_applies(libvirt_host, debian_image,
                                                        private_paths):
    missing = [c for c in ("mkisofs", "xsltproc", "ssh", "ssh-keygen")
               if shutil.which(c) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install genisoimage xsltproc "
                    "openssh-client")
    host, work, timings = libvirt_host, private_paths, {}
    cluster = _cluster_module()
    topo = topology.load("all-in-one")
    node = topo.node(NODE)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test",
                    "-f", str(work / "admin")], check=True)
    pool_dir = host.workdir / "pool"
    settings = vms.Settings(ssh_public_key=(work / "admin.pub").read_text().strip(),
                            uri=host.uri, image=str(debian_image.disk),
                            image_format=vms.image_format(str(debian_image.disk)),
                            pool_path=str(pool_dir), domain_type="qemu",
                            ssh_proxy_command=host.proxy_command())
    assert vms.check(topo, settings) == []
    keys = hostkeys.ensure(vms.state_dir(topo.name), [n.name for n in topo.nodes])
    inventory = vms.write_access_files(topo, settings, keys)

    started = time.monotonic()
    (work / "network.xml").write_text(network_xml(topo))
    host.virsh("net-define", str(work / "network.xml"))
    host.virsh("net-start", vms.network_name(topo))
    pool = vms.pool_name(topo)
    host.virsh("pool-define-as", pool, "dir", "--target", str(pool_dir))
    host.virsh("pool-build", pool)
    host.virsh("pool-start", pool)
    base = vms.image_volume_name(settings.image)
    size = json.loads(subprocess.run(["qemu-img", "info", "--output=json", settings.image],
                                     capture_output=True, text=True, check=True).stdout)
    host.virsh("vol-create-as", pool, base, str(size["virtual-size"]),
               "--format", settings.image_format)
    host.virsh("vol-upload", "--pool", pool, base, settings.image, timeout=600)
    disk = f"{node.name}.qcow2"
    host.virsh("vol-create-as", pool, disk, f"{node.disk_gib}G", "--format", "qcow2",
               "--backing-vol", base, "--backing-vol-format", settings.image_format)
    seed = cloudinit.render(topo, node, settings.admin_user, settings.ssh_public_key,
                            keys[node.name])
    seed_dir = work / "seed"
    seed_dir.mkdir()
    for name, text in (("user-data", seed.user_data), ("meta-data", seed.meta_data),
                       ("network-config", seed.network_config)):
        (seed_dir / name).write_text(text)
    iso = work / "seed.iso"
    subprocess.run(["mkisofs", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock",
                    *(str(seed_dir / n) for n in ("user-data", "meta-data", "network-config"))],
                   check=True, capture_output=True)
    seed_volume = f"{node.name}-cloud-init.iso"
    host.virsh("vol-create-as", pool, seed_volume, str(iso.stat().st_size), "--format", "raw")
    host.virsh("vol-upload", "--pool", pool, seed_volume, str(iso))

    arguments = cluster.domain_arguments(topo, node, settings)
    assert arguments["type"] == "qemu" and "cpu" not in arguments
    xml = _transform(domain_xml(topo, node, arguments, str(pool_dir / disk),
                                str(pool_dir / seed_volume)),
                     arguments["xml"]["xslt"], work)
    (work / "domain.xml").write_text(xml)
    domain = vms.domain_name(topo, node)
    host.virsh("define", str(work / "domain.xml"))
    host.virsh("start", domain)
    timings["define and start"] = time.monotonic() - started
    console_log = host.workdir / vms.console_log(topo, node).lstrip("/")

    try:
        hosts = remote.hostvars(inventory)
        hosts[NODE]["ansible_ssh_private_key_file"] = str(work / "admin")
        boot = time.monotonic()
        waiting = remote.wait_until_ready(hosts, BOOT_TIMEOUT)
        assert not waiting, f"{waiting}; console:\n{_tail(console_log)}"
        timings["boot to SSH"] = time.monotonic() - boot
        waiting = remote.wait_until_ready(hosts, BOOT_TIMEOUT, ready=providers.FIRST_BOOT_DONE)
        assert not waiting, f"{waiting}; console:\n{_tail(console_log)}"
        timings["boot to cloud-init done"] = time.monotonic() - boot

        def on_node(command: str) -> str:
            result = remote.run(hosts[NODE], command, timeout=120)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            return result.stdout.strip()

        assert "status: done" in on_node("cloud-init status")
        assert on_node("hostname --fqdn") == f"{NODE}.{topo.domain}"
        assert f"inet {node.address}/{topo.network.prefixlen} " in \
            on_node("ip -4 -o addr show dev eth0")
        assert on_node("ip route show default").startswith(f"default via {topo.gateway} ")
        # The network's DNS (dnsmasq in the namespace) answers for the node's name.
        assert on_node(f"getent hosts {NODE}.{topo.domain} || getent hosts {NODE}").split()[0] \
            == str(node.address)
        root_size = int(on_node("df --block-size=1 --output=size / | tail -1"))
        assert root_size > 0.9 * node.disk_gib * 1024 ** 3, "growpart did not grow the root"
        assert on_node("findmnt -no SOURCE /") == "/dev/vda1"

        assert "Debian GNU/Linux 13" in console_log.read_text(errors="replace"), \
            "the serial console is not logged"
        live = ElementTree.fromstring(host.virsh("dumpxml", domain).stdout)
        assert live.get("type") == "qemu"
        assert live.find("devices/graphics").get("type") == "vnc"
        assert live.find("devices/graphics/listen").get("address") == "127.0.0.1"
        assert host.virsh("vncdisplay", domain).stdout.strip().startswith("127.0.0.1:")
    finally:
        teardown = time.monotonic()
        host.virsh("destroy", domain, check=False)
        host.virsh("undefine", domain, check=False)
        for volume in (disk, seed_volume, base):
            host.virsh("vol-delete", "--pool", pool, volume, check=False)
        host.virsh("pool-destroy", pool, check=False)
        host.virsh("pool-delete", pool, check=False)
        host.virsh("pool-undefine", pool, check=False)
        host.virsh("net-destroy", vms.network_name(topo), check=False)
        host.virsh("net-undefine", vms.network_name(topo), check=False)
        timings["teardown"] = time.monotonic() - teardown
        print("\nlibvirt boot: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert host.virsh("list", "--all", "--name").stdout.split() == []
    assert host.virsh("net-list", "--all", "--name").stdout.split() == []
    assert host.virsh("pool-list", "--all", "--name").stdout.split() == []
    assert not pool_dir.exists()


def _tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no console log)"
    return "\n".join(text.splitlines()[-lines:])
