"""Lab networking: a lab namespace holding a bridge with the gateway address, and one namespace
per node joined to the bridge by a veth pair. The bridge has no uplink, so a node's default
route (Kubernetes picks the node address from it) leads nowhere beyond the lab.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kubestrata.paths import STATE_DIR
from kubestrata.shell import run

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"


# Names carry a short id of this checkout's state directory, so labs of two checkouts on one
# host (a developer's and CI's, say) never touch each other.
INSTANCE = "ks" + hashlib.sha1(str(STATE_DIR.resolve()).encode()).hexdigest()[:4]


def lab_namespace(lab: str) -> str:
    return f"{INSTANCE}-{lab}"


def node_namespace(lab: str, node: str) -> str:
    return f"{INSTANCE}-{lab}.{node}"


def namespaces(lab: str) -> list[str]:
    """The lab's namespaces that exist now, nodes first."""
    if not NETNS_DIR.is_dir():
        return []
    names = [p.name for p in NETNS_DIR.iterdir()]
    nodes = sorted(n for n in names if n.startswith(node_namespace(lab, "")))
    return nodes + [n for n in names if n == lab_namespace(lab)]


def exists(namespace: str) -> bool:
    return (NETNS_DIR / namespace).exists()


def _link_exists(namespace: str, link: str) -> bool:
    return run(["ip", "-n", namespace, "link", "show", link], check=False).returncode == 0


def ensure_lab(lab: str, gateway: str, prefix: int) -> bool:
    """The lab namespace with its bridge; True when something was created."""
    ns = lab_namespace(lab)
    changed = False
    if not exists(ns):
        run(["ip", "netns", "add", ns])
        changed = True
    if not _link_exists(ns, BRIDGE):
        run(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge"])
        changed = True
    run(["ip", "-n", ns, "addr", "replace", f"{gateway}/{prefix}", "dev", BRIDGE])
    run(["ip", "-n", ns, "link", "set", BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    return changed


def ensure_node(lab: str, node: str, address: str, prefix: int, gateway: str) -> bool:
    """The node's namespace, veth into the bridge and address; True when something was created."""
    ns = node_namespace(lab, node)
    outer = "vk" + hashlib.sha1(node.encode()).hexdigest()[:10]   # link names: 15 chars at most
    changed = False
    if not exists(ns):
        run(["ip", "netns", "add", ns])
        changed = True
    if not _link_exists(ns, "eth0"):
        run(["ip", "-n", lab_namespace(lab), "link", "del", outer], check=False)
        run(["ip", "-n", lab_namespace(lab), "link", "add", outer, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        changed = True
    run(["ip", "-n", lab_namespace(lab), "link", "set", outer, "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "addr", "replace", f"{address}/{prefix}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "route", "replace", "default", "via", gateway])
    return changed


def pids(namespace: str) -> list[int]:
    result = run(["ip", "netns", "pids", namespace], check=False)
    return [int(p) for p in result.stdout.split()]


def delete(namespace: str) -> None:
    run(["ip", "netns", "del", namespace], check=False)
