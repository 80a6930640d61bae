"""Checks a topology before anything is created: one line per problem, naming the field and the fix.

``check`` looks at the file's structure (known keys, types, formats); ``check_semantics``
at the derived topology (counts, address plans, sizes). Nothing here changes anything.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
from dataclasses import dataclass
from typing import Any, Callable

ROLES = ("etcd", "control_plane", "worker", "lb")
RUNTIMES = ("containerd", "cri-o")
CNIS = ("bridge", "flannel", "calico")
VERSION_KEYS = ("kubernetes", "etcd", "containerd", "runc", "cni_plugins")

# Minimum size per role. control_plane is kubeadm's own preflight minimum (2 CPUs, 1700 MiB);
# the others are what kubelet + runtime, an etcd member or haproxy + keepalived need to start.
MINIMUM_SIZE = {
    "control_plane": {"cpus": 2, "memory_mib": 1700, "disk_gib": 10},
    "worker": {"cpus": 1, "memory_mib": 1024, "disk_gib": 10},
    "etcd": {"cpus": 1, "memory_mib": 512, "disk_gib": 5},
    "lb": {"cpus": 1, "memory_mib": 256, "disk_gib": 5},
}

# What the pinned versions need of each other, from the upstream release notes:
# - Kubernetes 1.35 is the last release that supports containerd 1.x.
# - kubeadm refuses an external etcd older than its MinExternalEtcdVersion; per Kubernetes minor
#   (a later minor never lowers it, so minors past the table take its last entry).
# - containerd 2 is released and tested with runc 1.3 and later.
# The containerd role writes containerd 2's configuration (version 3) only.
CONTAINERD_2_FROM_KUBERNETES = (1, 36)
KUBEADM_MIN_EXTERNAL_ETCD = {(1, 34): (3, 5, 24), (1, 35): (3, 5, 24), (1, 36): (3, 5, 24),
                             (1, 37): (3, 5, 24)}
RUNC_MINIMUM_WITH_CONTAINERD_2 = (1, 3)

_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_LIBVIRT_URI = re.compile(r"^[a-z+]+://[^\s]*$")

# The node network holds at least the gateway and one node.
NODE_NETWORK_LONGEST_PREFIX = 30

# The ports the services of a role listen on: the etcd role's defaults and the Kubernetes
# components' own (kubeadm keeps them). The API server's port and haproxy's (the API endpoint on
# the virtual IP) are api.port, except that behind a virtual IP the API servers keep
# APISERVER_PORT. No other port is configurable, so api.port is the only one that can clash.
APISERVER_PORT = 6443
_KUBERNETES_NODE_PORTS = {10248: "the kubelet's health port", 10250: "the kubelet",
                          10249: "kube-proxy's metrics port", 10256: "kube-proxy's health port"}
ROLE_PORTS = {
    "etcd": {2379: "etcd's client port", 2380: "etcd's peer port", 2381: "etcd's metrics port"},
    "control_plane": {**_KUBERNETES_NODE_PORTS, 10257: "kube-controller-manager",
                      10259: "kube-scheduler"},
    "worker": _KUBERNETES_NODE_PORTS,
    "lb": {},
}

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 40
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 3, 4, 4


def shown(value: Any) -> str:
    """value as Python writes it, cut short: a value in an error line never makes it long."""
    return _SHOWN.repr(value)


@dataclass(frozen=True)
class Field:
    kind: Any       # a python type, a nested schema dict, or a list [schema or Field of an item]
    required: bool = True
    check: Callable[[Any], str | None] | None = None   # returns the fix, or None when fine


def _cidr(value: str) -> str | None:
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        return "write an IPv4 network in CIDR form with host bits zero, e.g. 10.40.1.0/24"
    if net.version != 4:
        return "only IPv4 networks are supported; write e.g. 10.40.1.0/24"
    return None


def _node_network(value: str) -> str | None:
    problem = _cidr(value)
    if problem is None and ipaddress.ip_network(value).prefixlen > NODE_NETWORK_LONGEST_PREFIX:
        return (f"{value} has no room for the gateway and the nodes; use a prefix of "
                f"/{NODE_NETWORK_LONGEST_PREFIX} or shorter, e.g. 10.40.1.0/24")
    return problem


def _address(value: str) -> str | None:
    try:
        if ipaddress.ip_address(value).version == 4:
            return None
    except ValueError:
        pass
    return "write an IPv4 address, e.g. 10.40.1.5"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value):
        return None if value in choices \
            else f"unknown {shown(value)}; use one of: {', '.join(choices)}"
    return check


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value):
        return None if low <= value <= high else f"must be between {low} and {high}"
    return check


def is_name(text: str) -> bool:
    """A topology's name (and its lab's): lowercase letters, digits and dashes."""
    return bool(_DNS_LABEL.fullmatch(text))


def _pattern(regex: re.Pattern, example: str) -> Callable[[Any], str | None]:
    def check(value):
        return None if regex.fullmatch(value) \
            else f"{shown(value)} is malformed; write it like {example}"
    return check


def _roles(value: list) -> str | None:
    unknown = [r for r in value if r not in ROLES]
    if unknown:
        return f"unknown role {unknown[0]!r}; roles are: {', '.join(ROLES)}"
    if not value:
        return f"give at least one role of: {', '.join(ROLES)}"
    if len(set(value)) != len(value):
        return "list each role once"
    return None


NODE_GROUP = {
    "name": Field(str, check=_pattern(_DNS_LABEL, "worker (lowercase letters, digits, dashes)")),
    "roles": Field([str], check=_roles),
    "count": Field(int, check=_between(0, 250)),
    "cpus": Field(int, check=_between(1, 512)),
    "memory_mib": Field(int, check=_between(128, 4 * 1024 * 1024)),
    "disk_gib": Field(int, check=_between(1, 65536)),
    "addresses": Field([Field(str, check=_address)], required=False),
    "libvirt_uri": Field(str, required=False,
                         check=_pattern(_LIBVIRT_URI, "qemu+ssh://admin@host/system")),
}

TOPOLOGY = {
    "name": Field(str, check=_pattern(_DNS_LABEL, "my-cluster (lowercase letters, digits, dashes)")),
    "description": Field(str, required=False),
    "network": Field({
        "cidr": Field(str, check=_node_network),
        "gateway": Field(str, required=False, check=_address),
        "first_host": Field(int, check=_between(2, 65534)),
        "domain": Field(str, check=_pattern(_DOMAIN, "kubestrata.internal")),
    }),
    "pods": Field({
        "cidr": Field(str, check=_cidr),
        "node_prefix": Field(int, check=_between(8, 28)),
    }),
    "services": Field({"cidr": Field(str, check=_cidr)}),
    "api": Field(required=False, kind={
        "virtual_ip": Field(str, required=False, check=_address),
        "port": Field(int, required=False, check=_between(1, 65535)),
    }),
    "runtime": Field(str, check=_one_of(RUNTIMES)),
    "cni": Field(str, check=_one_of(CNIS)),
    "versions": Field({k: Field(str, check=_pattern(_VERSION, "1.36.3")) for k in VERSION_KEYS}),
    "node_groups": Field([NODE_GROUP]),
}

_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", dict: "a mapping",
               list: "a list"}


def check(spec: dict) -> list[str]:
    """Structural problems of a topology file: unknown or missing keys, wrong types, bad formats."""
    return _check_mapping(spec, TOPOLOGY, "")


def _check_mapping(value: Any, fields: dict, path: str) -> list[str]:
    where = path or "topology"
    if not isinstance(value, dict):
        return [f"{where}: must be a mapping of {', '.join(fields)}"]
    problems = []
    for key in value:
        if key not in fields:
            problems.append(f"{_join(path, plain(key))}: unknown key; known keys here are "
                            f"{', '.join(fields)} (check the spelling)")
    for key, field in fields.items():
        if key not in value or value[key] is None:
            if field.required:
                problems.append(f"{_join(path, key)}: missing; add it (see topologies/*.yaml)")
            continue
        problems += _check_value(value[key], field, _join(path, key))
    return problems


def _check_value(value: Any, field: Field, path: str) -> list[str]:
    kind = field.kind
    if isinstance(kind, dict):
        return _check_mapping(value, kind, path)
    if isinstance(kind, list):
        if not isinstance(value, list):
            return [f"{path}: must be a list"]
        item = kind[0] if isinstance(kind[0], Field) else Field(kind[0])
        problems = []
        for index, element in enumerate(value):
            problems += _check_value(element, item, f"{path}[{index}]")
        if not problems and field.check:
            problems += _fix(path, field.check(value))
        return problems
    # bool is an int in Python; "true" in quotes is a string: both are type errors here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = type(value).__name__
        hint = " (remove the quotes)" if isinstance(value, str) and kind is not str else ""
        return [f"{path}: must be {_TYPE_NAMES[kind]}, got {got} {shown(value)}{hint}"]
    return _fix(path, field.check(value)) if field.check else []


def _fix(path: str, message: str | None) -> list[str]:
    return [f"{path}: {message}"] if message else []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def plain(value: Any) -> str:
    """value for an error line: as written when it is short printable text, else shown."""
    return value if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 80 \
        else shown(value)


def check_semantics(topology) -> list[str]:
    """Problems of the derived topology: counts, HA rules, address plan, sizes."""
    return (_check_groups(topology) + _check_roles(topology) + _check_addresses(topology)
            + _check_cidrs(topology) + _check_api(topology) + _check_ports(topology)
            + _check_sizes(topology) + _check_versions(topology))


def _group_field(topology, group: str, key: str) -> str:
    names = [g["name"] for g in topology.spec["node_groups"]]
    return f"node_groups[{names.index(group)}].{key}" if group in names else f"node_groups.{key}"


def _check_groups(topology) -> list[str]:
    problems = []
    seen = set()
    for index, group in enumerate(topology.spec["node_groups"]):
        if group["name"] in seen:
            problems.append(f"node_groups[{index}].name: duplicate group name {group['name']!r}; "
                            "give each group its own name (node names derive from it)")
        seen.add(group["name"])
        fixed = group.get("addresses") or []
        if len(fixed) > group["count"]:
            problems.append(f"node_groups[{index}].addresses: {len(fixed)} addresses for "
                            f"{group['count']} nodes; list at most count addresses")
    names = [n.name for n in topology.nodes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"node_groups: duplicate node name {name!r}; rename one of the groups")
    return problems


def _check_roles(topology) -> list[str]:
    problems = []
    etcd = topology.with_role("etcd")
    if not etcd:
        problems.append("node_groups: no node has the etcd role; give one group roles: [etcd]")
    elif len(etcd) % 2 == 0:
        group = etcd[-1].group
        problems.append(f"{_group_field(topology, group, 'count')}: {len(etcd)} etcd members; "
                        "etcd needs an odd count (1, 3, 5) to keep a quorum: change the count")
    if not topology.with_role("control_plane"):
        problems.append("node_groups: no node has the control_plane role; "
                        "give one group roles: [control_plane]")
    if not topology.with_role("worker") and not topology.with_role("control_plane"):
        problems.append("node_groups: no node can run workloads; give a group the worker role")
    if topology.with_role("lb") and not topology.is_ha:
        problems.append("api.virtual_ip: lb nodes are given but no virtual IP; "
                        "set api.virtual_ip or drop the lb role")
    return problems


def _check_addresses(topology) -> list[str]:
    problems = []
    net = topology.network
    if topology.gateway not in net or topology.gateway in (net.network_address, net.broadcast_address):
        problems.append(f"network.gateway: {topology.gateway} is not a host of {net}; "
                        "leave it out (the first host is used) or give one inside the network")
    seen: dict = {}
    for node in topology.nodes:
        field = _group_field(topology, node.group, "addresses")
        if node.address not in net or node.address in (net.network_address, net.broadcast_address):
            problems.append(f"{field}: {node.name} would get {node.address}, outside the node "
                            f"network {net}; widen network.cidr, lower network.first_host "
                            "or fix the address")
        elif node.address == topology.gateway:
            problems.append(f"{field}: {node.name} has the gateway address {node.address}; "
                            "choose another address")
        if node.address in seen:
            problems.append(f"{field}: {node.name} and {seen[node.address]} share the address "
                            f"{node.address}; give each node its own")
        seen[node.address] = node.name
    return problems


def _check_cidrs(topology) -> list[str]:
    problems = []
    nets = {"network.cidr": topology.network, "pods.cidr": topology.pod_cidr,
            "services.cidr": topology.service_cidr}
    keys = list(nets)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if nets[a].overlaps(nets[b]):
                problems.append(f"{b}: {nets[b]} overlaps {a} {nets[a]}; "
                                "choose ranges that do not overlap")
    prefix = topology.spec["pods"]["node_prefix"]
    k8s_nodes = [n for n in topology.nodes if n.is_kubernetes_node]
    if prefix < topology.pod_cidr.prefixlen:
        problems.append(f"pods.node_prefix: /{prefix} is wider than pods.cidr {topology.pod_cidr}; "
                        f"use a prefix of at least {topology.pod_cidr.prefixlen}")
    elif 2 ** (prefix - topology.pod_cidr.prefixlen) < len(k8s_nodes):
        problems.append(f"pods.cidr: {topology.pod_cidr} holds only "
                        f"{2 ** (prefix - topology.pod_cidr.prefixlen)} /{prefix} node ranges for "
                        f"{len(k8s_nodes)} nodes; widen pods.cidr or raise pods.node_prefix")
    return problems


def _check_api(topology) -> list[str]:
    problems = []
    control_planes = topology.with_role("control_plane")
    vip = topology.virtual_ip
    if vip is None:
        if len(control_planes) > 1:
            problems.append(f"api.virtual_ip: {len(control_planes)} control-plane nodes need a "
                            "virtual IP in front of them; set api.virtual_ip to a free address "
                            "of the node network")
        return problems
    if len(control_planes) < 2:
        problems.append(f"{_group_field(topology, control_planes[0].group, 'count') if control_planes else 'node_groups'}: "
                        f"an HA topology (api.virtual_ip is set) needs at least 2 control-plane "
                        "nodes; raise the count or remove api.virtual_ip")
    net = topology.network
    if vip not in net or vip in (net.network_address, net.broadcast_address):
        problems.append(f"api.virtual_ip: {vip} is outside the node network {net}; "
                        "choose a free address inside it")
    if vip == topology.gateway:
        problems.append(f"api.virtual_ip: {vip} is the gateway address; choose a free address")
    for node in topology.nodes:
        if node.address == vip:
            problems.append(f"api.virtual_ip: {vip} is also the address of {node.name}; "
                            "choose an address no node has")
    return problems


def _check_ports(topology) -> list[str]:
    """api.port against the other ports of every node that listens on it."""
    clashes: dict[tuple[str, str], list[str]] = {}    # (its service, the other) -> nodes
    for node in topology.nodes:
        service = _service_on_api_port(topology, node)
        other = _fixed_ports(topology, node).get(topology.api_port)
        if service and other:
            clashes.setdefault((service, other), []).append(node.name)
    free = 8443 if topology.is_ha else APISERVER_PORT
    return [f"api.port: {service} (api.port) and {other} both listen on {topology.api_port} "
            f"on {', '.join(nodes)}; choose another port, such as {free}"
            for (service, other), nodes in clashes.items()]


def _service_on_api_port(topology, node) -> str | None:
    if topology.is_ha:
        return "haproxy" if node in topology.load_balancers else None
    return "the API server" if node.has("control_plane") else None


def _fixed_ports(topology, node) -> dict[int, str]:
    ports = {port: service for role in node.roles for port, service in ROLE_PORTS[role].items()}
    if topology.is_ha and node.has("control_plane"):
        ports[APISERVER_PORT] = "the API server"
    return ports


def _check_sizes(topology) -> list[str]:
    problems = []
    for group in topology.spec["node_groups"]:
        for key in ("cpus", "memory_mib", "disk_gib"):
            need = max(MINIMUM_SIZE[role][key] for role in group["roles"])
            if group[key] < need:
                role = max(group["roles"], key=lambda r: MINIMUM_SIZE[r][key])
                problems.append(f"{_group_field(topology, group['name'], key)}: {group[key]} is "
                                f"below the minimum of {need} for a {role} node; raise it to {need}")
    return problems


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def min_external_etcd(kubernetes: str) -> tuple[int, ...] | None:
    """kubeadm's minimum external etcd for a Kubernetes version (None: no rule known)."""
    minor = _version(kubernetes)[:2]
    known = [m for m in KUBEADM_MIN_EXTERNAL_ETCD if m <= minor]
    return KUBEADM_MIN_EXTERNAL_ETCD[max(known)] if known else None


def _check_versions(topology) -> list[str]:
    """Pinned versions that cannot work together."""
    problems = []
    versions = topology.versions
    kubernetes = _version(versions["kubernetes"])
    k8s = _dotted(kubernetes)
    etcd_minimum = min_external_etcd(k8s)
    if etcd_minimum and _version(versions["etcd"]) < etcd_minimum:
        problems.append(f"versions.etcd: etcd {versions['etcd']} is older than "
                        f"{_dotted(etcd_minimum)}, the oldest external etcd kubeadm "
                        f"{'.'.join(map(str, kubernetes[:2]))} accepts; pin etcd "
                        f"{_dotted(etcd_minimum)} or later (e.g. 3.5.30)")
    if topology.runtime != "containerd":
        return problems
    containerd = _version(versions["containerd"])
    if containerd < (2,):
        if kubernetes[:2] >= CONTAINERD_2_FROM_KUBERNETES:
            problems.append(f"versions.containerd: Kubernetes {k8s} needs containerd 2 "
                            f"(1.35 was the last release to support containerd 1.x); "
                            f"pin containerd 2.x (e.g. 2.1.9)")
        else:
            problems.append(f"versions.containerd: containerd {versions['containerd']} cannot "
                            "read the configuration the containerd role writes (version 3, "
                            "containerd 2's); pin containerd 2.x (e.g. 2.1.9)")
    elif _version(versions["runc"]) < RUNC_MINIMUM_WITH_CONTAINERD_2:
        problems.append(f"versions.runc: runc {versions['runc']} is older than containerd 2 "
                        f"needs ({_dotted(RUNC_MINIMUM_WITH_CONTAINERD_2)} or later); "
                        "pin runc 1.3.x (e.g. 1.3.6)")
    return problems
