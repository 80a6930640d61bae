"""The VM path outside Pulumi: settings, libvirt names, checks, and how Ansible reaches the VMs.

The Pulumi program in ``infra/`` and a later ``kubestrata up --provider libvirt`` share this:
which hypervisor runs which node, what libvirt objects are called, the checks a topology must
pass to run on libvirt, and the files next to the inventory (``hosts.yml``, ``known_hosts``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kubestrata import hostkeys, inventory, paths
from kubestrata.topology import Node, Topology

DEFAULT_URI = "qemu:///system"
DEFAULT_IMAGE = ("https://cloud.debian.org/images/cloud/trixie/latest/"
                 "debian-13-generic-amd64.qcow2")
DEFAULT_ADMIN_USER = "kubestrata"
DEFAULT_POOL_PARENT = "/var/lib/libvirt/images"
# libvirt domain types kubestrata runs: kvm (hardware virtualisation) or qemu (software
# emulation, TCG: slow, but needs no /dev/kvm).
DOMAIN_TYPES = ("kvm", "qemu")
DEFAULT_DOMAIN_TYPE = "kvm"
# Base image formats the provider's volumes take (a copy-on-write qcow2 disk sits on either).
IMAGE_FORMATS = ("qcow2", "raw")
# Where each VM's serial console is logged on its hypervisor (libvirt's own log directory).
CONSOLE_LOG_DIR = "/var/log/libvirt/qemu"
PUBLIC_KEY_FILES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")

_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+"
                         r"( [^\n]*)?$")


@dataclass(frozen=True)
class Settings:
    """What the stack configuration adds to the topology (docs/libvirt.md lists the keys)."""
    ssh_public_key: str
    uri: str = DEFAULT_URI
    image: str = DEFAULT_IMAGE
    admin_user: str = DEFAULT_ADMIN_USER
    pool_path: str | None = None         # default: DEFAULT_POOL_PARENT/kubestrata-<topology>
    bridge: str | None = None            # an existing host bridge instead of a NAT network
    image_format: str = "qcow2"          # the base image's format (image_format() detects it)
    domain_type: str = DEFAULT_DOMAIN_TYPE
    # How ssh reaches VMs that are not routable from here (%h, %p left to ssh), e.g.
    # "ip netns exec NS python3 -m kubestrata.lab.proxy %h %p"; none: directly or ProxyJump.
    ssh_proxy_command: str | None = None


def default_public_key(home: Path | None = None) -> str | None:
    """The first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub, if any."""
    ssh_dir = (home or Path.home()) / ".ssh"
    for name in PUBLIC_KEY_FILES:
        if (ssh_dir / name).is_file():
            return (ssh_dir / name).read_text().strip()
    return None


def image_format(image: str) -> str:
    """The base image's format: qemu-img's answer for a local file (the magic number without
    qemu-img), else the URL's suffix (.raw or .img: raw; anything else: qcow2)."""
    parts = urlsplit(image)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme else image)
        if path.is_file():
            return _local_image_format(path)
    return "raw" if Path(parts.path).suffix in (".raw", ".img") else "qcow2"


def _local_image_format(path: Path) -> str:
    if shutil.which("qemu-img"):
        info = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                              capture_output=True, text=True, timeout=120)
        if info.returncode == 0:
            return json.loads(info.stdout)["format"]
    with path.open("rb") as image:
        magic = image.read(4)
    return "qcow2" if magic == b"QFI\xfb" else "raw"


def console_log(topology: Topology, node: Node) -> str:
    """The node's serial console log on its hypervisor."""
    return f"{CONSOLE_LOG_DIR}/{domain_name(topology, node)}-console.log"


def check(topology: Topology, settings: Settings) -> list[str]:
    """Problems that stop this topology from running on libvirt with these settings."""
    problems = []
    if not _PUBLIC_KEY.match(settings.ssh_public_key.strip()):
        problems.append("kubestrata:sshPublicKey: not an OpenSSH public key; set it with "
                        "pulumi config set sshPublicKey \"$(cat ~/.ssh/id_ed25519.pub)\"")
    if not _USER_NAME.match(settings.admin_user) or settings.admin_user == "root":
        problems.append(f"kubestrata:adminUser: {settings.admin_user!r} cannot be the admin "
                        "user; use a lowercase login name other than root, e.g. kubestrata")
    if settings.domain_type not in DOMAIN_TYPES:
        problems.append(f"kubestrata:domainType: {settings.domain_type!r} is not a domain type "
                        "kubestrata runs; use kvm (hardware virtualisation, the default) or "
                        "qemu (software emulation, for hosts without /dev/kvm; slow)")
    if settings.image_format not in IMAGE_FORMATS:
        problems.append(f"kubestrata:image: {settings.image} is a {settings.image_format} "
                        "image; libvirt volumes here take qcow2 or raw: convert it with "
                        f"qemu-img convert -O qcow2 {settings.image} IMAGE.qcow2")
    if settings.ssh_proxy_command is not None and "%h" not in settings.ssh_proxy_command:
        problems.append("kubestrata:sshProxyCommand: the command must connect to %h (and %p), "
                        "which ssh replaces by each VM's address and port")
    labels: dict[str, str] = {}
    for uri in hypervisors(topology, settings):
        if hypervisor_label(uri) in labels:
            problems.append(f"node_groups: the libvirt URIs {labels[hypervisor_label(uri)]} and "
                            f"{uri} differ only in their parameters; give both node groups the "
                            "same URI")
        labels.setdefault(hypervisor_label(uri), uri)
    if settings.bridge is not None:
        if not _BRIDGE_NAME.match(settings.bridge):
            problems.append(f"kubestrata:bridge: {settings.bridge!r} is not a Linux bridge "
                            "name (at most 15 letters, digits, '.', '_', '-')")
        return problems
    host = topology.network[1]
    if topology.gateway != host:
        problems.append(f"network.gateway: a libvirt NAT network puts the host at {host}, the "
                        f"first address of {topology.network}; leave network.gateway out or "
                        f"set it to {host} (or join a host bridge whose router is "
                        f"{topology.gateway} with kubestrata:bridge)")
    uris = hypervisors(topology, settings)
    if len(uris) > 1:
        problems.append(f"node_groups: the nodes run on {len(uris)} hypervisors "
                        f"({', '.join(uris)}) but a libvirt NAT network stays on its own host; "
                        "set kubestrata:bridge to a host bridge that joins the hypervisors")
    return problems


def hypervisors(topology: Topology, settings: Settings) -> dict[str, list[Node]]:
    """The nodes of each libvirt URI, in topology order."""
    by_uri: dict[str, list[Node]] = {}
    for node in topology.nodes:
        by_uri.setdefault(node.libvirt_uri or settings.uri, []).append(node)
    return by_uri


def pool_name(topology: Topology) -> str:
    return f"kubestrata-{topology.name}"


def pool_path(topology: Topology, settings: Settings) -> str:
    return settings.pool_path or f"{DEFAULT_POOL_PARENT}/{pool_name(topology)}"


def network_name(topology: Topology) -> str:
    return f"kubestrata-{topology.name}"


def domain_name(topology: Topology, node: Node) -> str:
    """Domain names are global on a host, so they carry the topology name."""
    return f"{topology.name}-{node.name}"


def image_volume_name(image: str) -> str:
    """The base volume's name: a URL's file name; for a local file its name with the first 12
    hex digits of its content's SHA-256 (disk.qcow2 -> disk-f6b3cf7d2f38.qcow2), so that the
    same image keeps its name wherever it lies and a different one never takes it."""
    parts = urlsplit(image)
    path = Path(parts.path)
    if parts.scheme in ("", "file") and path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as content:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
        return f"{path.stem}-{digest.hexdigest()[:12]}{path.suffix}"
    return path.name


def hypervisor_label(uri: str) -> str:
    """The resource name of a libvirt URI's hypervisor: the URI without its query (keyfile,
    socket, known hosts: how to reach it, not which one it is), so editing ?keyfile= renames
    nothing: qemu+ssh://admin@kvm2:2222/system?keyfile=... -> qemu-ssh-admin-kvm2-2222-system."""
    parts = urlsplit(uri)
    return re.sub(r"[^a-z0-9]+", "-",
                  parts._replace(query="", fragment="").geturl().lower()).strip("-")


def mac_address(topology: Topology, node: Node) -> str:
    """A stable MAC in the QEMU range, so network-config can match the interface by it."""
    digest = hashlib.sha256(f"{topology.name}/{node.name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def inventory_path(topology: Topology) -> Path:
    """Where hosts.yml lands (gitignored); known_hosts lies next to it."""
    return paths.INVENTORY_DIR / "libvirt" / topology.name / "hosts.yml"


def known_hosts_path(topology: Topology) -> Path:
    return inventory_path(topology).with_name("known_hosts")


def state_dir(stack: str) -> Path:
    """Private per-stack state (host keys); never committed."""
    return paths.STATE_DIR / "libvirt" / stack


def ssh_options(topology: Topology) -> list[str]:
    return ["-o", f"UserKnownHostsFile={known_hosts_path(topology)}",
            "-o", "StrictHostKeyChecking=yes"]


def _jump_host(uri: str, settings: Settings) -> str | None:
    """A remote qemu+ssh hypervisor, when its NAT network is reachable only through it."""
    parts = urlsplit(uri)
    if settings.bridge or not parts.hostname or not parts.scheme.endswith("+ssh"):
        return None
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname}{port}"


def _node_ssh_options(topology: Topology, settings: Settings, node: Node) -> list[str]:
    if settings.ssh_proxy_command:          # replaces any ProxyJump (ssh takes the first)
        return ssh_options(topology) + ["-o", f"ProxyCommand={settings.ssh_proxy_command}"]
    jump = _jump_host(node.libvirt_uri or settings.uri, settings)
    return ssh_options(topology) + (["-o", f"ProxyJump={jump}"] if jump else [])


def inventory_for(topology: Topology, settings: Settings) -> dict:
    """The Ansible inventory of the VMs: the shared renderer plus how to reach each VM."""
    connection = {node.name: {"ansible_ssh_common_args":
                              shlex.join(_node_ssh_options(topology, settings, node))}
                  for node in topology.nodes}
    # The VMs' admin user is not root: every system task escalates with sudo.
    return inventory.render(topology, connection, {"ansible_user": settings.admin_user,
                                                   "ansible_become": settings.admin_user != "root"})


def ssh_commands(topology: Topology, settings: Settings) -> dict[str, str]:
    """One ssh command line per node."""
    return {node.name: shlex.join(["ssh", *_node_ssh_options(topology, settings, node),
                                   f"{settings.admin_user}@{node.address}"])
            for node in topology.nodes}


def write_access_files(topology: Topology, settings: Settings,
                       keys: dict[str, hostkeys.HostKey]) -> Path:
    """Write known_hosts, then hosts.yml next to it; returns the inventory's path."""
    known_hosts = known_hosts_path(topology)
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    known_hosts.write_text(hostkeys.known_hosts(topology, keys))
    return inventory.write(inventory_for(topology, settings), inventory_path(topology))
