"""The VM path outside Pulumi: settings, libvirt names, checks, and how Ansible reaches the VMs.

The Pulumi program in ``infra/`` and a later ``kubestrata up --provider libvirt`` share this:
which hypervisor runs which node, what libvirt objects are called, the checks a topology must
pass to run on libvirt, and the files next to the inventory (``hosts.yml``, ``known_hosts``).
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kubestrata import hostkeys, inventory, paths, vmimage
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
# qemu:///system's sockets: the modular daemon's (virtqemud), the monolithic libvirtd's.
SYSTEM_SOCKETS = ("/run/libvirt/virtqemud-sock", "/run/libvirt/libvirt-sock")
ROUTES = Path("/proc/net/route")         # this machine's IPv4 routes (main table)
# What the machine running Pulumi runs itself, and what for.
LOCAL_TOOLS = {
    "mkisofs": "kubestrata builds the VMs' cloud-init seeds with it: apt-get install genisoimage",
    "xsltproc": "the libvirt provider transforms the domains', volumes' and pool's XML with it: "
                "apt-get install xsltproc",
}
GENERATIONS_FILE = "generations.json"       # in the state directory, beside the host keys

_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+"
                         r"( [^\n]*)?$")


# What a new VM writes to its disk soon after it boots (cloud-init, the layers' packages and
# images), in GiB: the host preflight wants that much free in the pool for each new disk.
FIRST_BOOT_GIB = 2


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
    # A URL image's sha256:HEX or sha512:HEX; none: the SHA512SUMS beside it (vmimage).
    image_checksum: str | None = None


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
    if settings.image_checksum is not None and not vmimage.CHECKSUM.match(settings.image_checksum):
        problems.append(f"kubestrata:imageChecksum: {settings.image_checksum!r} is not a "
                        "checksum; write sha256:HEX or sha512:HEX (64 or 128 lowercase hex "
                        "digits, as sha256sum or sha512sum print them)")
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


def preflight(topology: Topology, settings: Settings) -> list[str]:
    """What this machine lacks for the VMs, found before anything is made: the tools it runs, and
    for a hypervisor on this machine its daemon's socket, /dev/kvm for kvm domains, routes
    that the NAT network's CIDR would clash with, and room in the pool for the new VMs."""
    problems = [f"{tool}: not found on this machine; {why}" for tool, why in LOCAL_TOOLS.items()
                if shutil.which(tool) is None]
    local = {uri: sockets for uri in hypervisors(topology, settings)
             if (sockets := _local_sockets(uri))}
    problems += filter(None, (_socket_problem(uri, sockets) for uri, sockets in local.items()))
    if local and settings.domain_type == "kvm" and not os.path.exists("/dev/kvm"):
        problems.append("kubestrata:domainType: kvm, but this machine has no /dev/kvm "
                        "(hardware virtualisation is off or missing): turn it on, or set "
                        "domainType qemu (software emulation, several times slower)")
    if local and settings.bridge is None:
        problems += [f"network.cidr: {topology.network} overlaps {route}, routed to {device} "
                     "on this machine, and libvirt would refuse the NAT network; choose a "
                     "network.cidr that no route of this machine covers"
                     for device, route in host_routes()
                     if device != bridge_name(topology) and route.prefixlen > 0
                     and route.overlaps(topology.network)]
    if local:
        problems += filter(None, [_pool_space_problem(topology, settings)])
    return problems


def _pool_space_problem(topology: Topology, settings: Settings) -> str | None:
    """Whether the local pool's filesystem holds the new VMs' first boot. Their disks are
    copy-on-write over the base image: they take what the VM writes, up to the topology's disk
    size, so the need at first is FIRST_BOOT_GIB per VM whose disk is not in the pool yet."""
    pool = Path(pool_path(topology, settings))
    try:
        disks = [path.name for path in pool.glob("*.qcow2")]
    except OSError:             # a pool directory this user may not list
        disks = []
    new = [node for node in topology.nodes
           if not any(name == f"{node.name}.qcow2" or name.startswith(f"{node.name}-r")
                      for name in disks)]
    existing = next(path for path in (pool, *pool.parents) if path.exists())
    free = shutil.disk_usage(existing).free
    if not new or free >= len(new) * FIRST_BOOT_GIB * 2 ** 30:
        return None
    return (f"kubestrata:poolPath: {pool} has {free / 2 ** 30:.1f} GiB free, and the "
            f"{len(new)} new VMs need about {len(new) * FIRST_BOOT_GIB} GiB at first "
            f"({FIRST_BOOT_GIB} GiB each for cloud-init, packages and images; their disks can "
            f"grow to {sum(node.disk_gib for node in new)} GiB); free space there, or set "
            "poolPath on a larger filesystem")


def _local_sockets(uri: str) -> tuple[str, ...]:
    """The sockets of a qemu URI of this machine's system daemon (none: remote or session)."""
    parts = urlsplit(uri)
    if parts.hostname or parts.scheme not in ("qemu", "qemu+unix"):
        return ()
    query = dict(pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
    if "socket" in query:
        return (query["socket"],)
    return SYSTEM_SOCKETS if parts.path == "/system" else ()


def _socket_problem(uri: str, sockets: tuple[str, ...]) -> str | None:
    present = [path for path in sockets if os.path.exists(path)]
    if not present:
        return (f"libvirt URI {uri}: no libvirt daemon on this machine ({' or '.join(sockets)} "
                "is missing): apt-get install libvirt-daemon-system, or start it (systemctl "
                "start libvirtd)")
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        try:
            client.connect(present[0])
        except PermissionError:
            return (f"libvirt URI {uri}: {present[0]} refuses user {getpass.getuser()}; run as "
                    "root or as a member of the libvirt group (adduser USER libvirt, then log "
                    "in again)")
        except OSError as error:
            return (f"libvirt URI {uri}: no daemon answers on {present[0]} ({error.strerror}); "
                    "start it (systemctl start libvirtd)")
    return None


def host_routes() -> list[tuple[str, ipaddress.IPv4Network]]:
    """This machine's IPv4 routes as (device, destination)."""
    routes = []
    for line in ROUTES.read_text().splitlines()[1:]:
        fields = line.split()
        destination, mask = (ipaddress.IPv4Address(int(field, 16).to_bytes(4, "little"))
                             for field in (fields[1], fields[7]))
        routes.append((fields[0], ipaddress.IPv4Network(f"{destination}/{mask}")))
    return routes


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


def bridge_name(topology: Topology) -> str:
    """The NAT network's bridge: named here (at most 15 characters), so that the preflight
    knows its route for the network's own."""
    return f"ksbr-{hashlib.sha256(topology.name.encode()).hexdigest()[:10]}"


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


def state_dir(name: str) -> Path:
    """Private state of topology name's VMs (host keys, seeds); never committed."""
    return paths.STATE_DIR / "libvirt" / name


def seed_path(topology: Topology, node: Node) -> Path:
    """The node's cloud-init seed ISO, made here and uploaded to its hypervisor."""
    return state_dir(topology.name) / "seeds" / f"{node.name}.iso"


def generations(name: str) -> dict[str, int]:
    """How many times each node's machine has been replaced (`kubestrata replace`); a node
    never replaced is not listed (0)."""
    path = state_dir(name) / GENERATIONS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def renew(name: str, node: str) -> None:
    """Ask the next pulumi up for a new machine for node: a new host key (hence a new seed),
    and its generation moved on, which names its disk anew (disk_name), so that Pulumi makes
    both and, on them, a new domain."""
    directory = state_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    counts = generations(name)
    counts[node] = counts.get(node, 0) + 1
    (directory / GENERATIONS_FILE).write_text(json.dumps(counts, sort_keys=True) + "\n")
    hostkeys.forget(directory, node)


def disk_protected(topology: Topology, node: Node) -> bool:
    """Whether Pulumi protects the node's disk (protect_disks: etcd members and control planes):
    nothing deletes or replaces it."""
    return bool(topology.spec.get("protect_disks")) and (node.has("etcd")
                                                         or node.has("control_plane"))


def disk_name(node: Node, generation: int) -> str:
    """The name of a node's disk volume: cp-1.qcow2 at first, then with the generation
    (cp-1-r1.qcow2 after its first replacement)."""
    return f"{node.name}.qcow2" if generation == 0 else f"{node.name}-r{generation}.qcow2"


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
                              shlex.join(_node_ssh_options(topology, settings, node)),
                              # where `kubestrata console` finds the node's serial console
                              "libvirt_uri": node.libvirt_uri or settings.uri,
                              "libvirt_domain": domain_name(topology, node)}
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
