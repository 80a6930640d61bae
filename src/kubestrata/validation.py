"""Checks a topology before anything is created: one line per problem, naming the field and the fix.

``check`` looks at the file's structure (known keys, types, formats) against the JSON Schema
``topology.schema.json``; ``check_semantics`` at the derived topology (counts, address plans,
sizes, ports, versions), which a schema cannot express. Nothing here changes anything.
"""

from __future__ import annotations

import ipaddress
import json
import re
import reprlib
from importlib import resources
from typing import Any, Iterator, NamedTuple

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

SCHEMA = json.loads(resources.files("kubestrata").joinpath("topology.schema.json").read_text())

_FORMATS = FormatChecker(formats=["ipv4"])


@_FORMATS.checks("ipv4-network", raises=ValueError)
def _is_ipv4_network(value: Any) -> bool:
    return not isinstance(value, str) or ipaddress.ip_network(value).version == 4


# An integer is a whole number as YAML writes it: 2.0 is a float, true is no number.
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
_VALIDATOR = validators.extend(Draft202012Validator, type_checker=_TYPES)(
    SCHEMA, format_checker=_FORMATS)

# What is wrong, by the schema keyword that failed (a schema node's x-problem replaces it), and
# the fix where the node gives no x-fix.
PROBLEMS = {
    "enum": "unknown {value}",
    "pattern": "{value} is malformed",
    "format": "{value} is malformed",
    "minimum": "must be between {minimum} and {maximum}, got {value}",
    "maximum": "must be between {minimum} and {maximum}, got {value}",
    "minItems": "is empty",
    "uniqueItems": "lists an item twice",
}
FIXES = {"enum": "use one of: {choices}"}
_TYPE_NAMES = {"string": "a string", "integer": "a whole number", "boolean": "true or false",
               "array": "a list", "object": "a mapping of {keys}"}
MISSING = "missing; add it (see topologies/*.yaml)"

# Values in a topology with its YAML aliases expanded; the built-in ones hold about a hundred.
MOST_VALUES = 10_000

_NAME = re.compile(SCHEMA["$defs"]["name"]["pattern"])


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


def is_name(text: str) -> bool:
    """A topology's name (and its lab's): lowercase letters, digits and dashes."""
    return bool(_NAME.search(text))


class _Problem(NamedTuple):
    field: str              # as an error line names it: node_groups[1].count
    place: tuple[int, ...]  # where it comes in the schema's order (unknown keys first)
    keyword: str            # the schema keyword that failed
    text: str               # what is wrong and the fix


def check(spec: Any) -> list[str]:
    """Structural problems of a topology file, one line per field: unknown or missing keys, wrong
    types, bad formats. In the schema's order (a topology file's), unknown keys first."""
    try:
        if not _holds_at_most(spec, MOST_VALUES):
            return [f"topology: holds more than {MOST_VALUES} values once its YAML aliases "
                    "(*name) are expanded; write it out without the aliases that repeat large parts"]
        errors = list(_VALIDATOR.iter_errors(spec))
    except RecursionError:
        return ["topology: a value refers to itself too deeply to check; remove the YAML "
                "aliases (*name) inside what they refer to"]
    problems = sorted((problem for error in errors for problem in _problems(error)),
                      key=lambda problem: (problem.place, problem.keyword != "type"))
    lines: dict[str, str] = {}
    for problem in problems:    # one line per field; a wrong type makes the rest moot
        lines.setdefault(problem.field, f"{problem.field}: {problem.text}")
    return list(lines.values())


def _holds_at_most(value: Any, most: int) -> bool:
    """Whether value holds at most `most` values, each alias's counted where it is used (as
    repr() counts them: a value is not counted again inside itself)."""
    left = most

    def count(item: Any, inside: set[int]) -> None:
        nonlocal left
        left -= 1
        if left < 0 or id(item) in inside or not isinstance(item, (dict, list)):
            return
        inside.add(id(item))
        for child in item.values() if isinstance(item, dict) else item:
            count(child, inside)
        inside.discard(id(item))

    count(value, set())
    return left >= 0


def _problems(error: ValidationError) -> Iterator[_Problem]:
    """The fields an error is about: the keys a mapping lacks or should not have, or the value
    that fails, each with what is wrong and the fix."""
    path, keyword, schema = tuple(error.path), error.validator, error.schema
    if keyword == "additionalProperties":
        known = ", ".join(schema["properties"])
        for key in error.instance:
            if key not in schema["properties"]:
                yield _Problem(*_locate(path + (key,)), keyword,
                               f"unknown key; known keys here are {known} (check the spelling)")
    elif keyword == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield _Problem(*_locate(path + (key,)), keyword, MISSING)
    elif keyword == "type":
        yield _Problem(*_locate(path), keyword,
                       MISSING if error.instance is None else _wrong_type(error))
    else:
        words = {"value": shown(error.instance), "choices": ", ".join(schema.get("enum", ())),
                 "minimum": schema.get("minimum"), "maximum": schema.get("maximum")}
        problem = schema.get("x-problem", PROBLEMS[keyword]).format(**words)
        fix = schema.get("x-fix", FIXES.get(keyword, "")).format(**words)
        yield _Problem(*_locate(path), keyword, f"{problem}; {fix}" if fix else problem)


def _wrong_type(error: ValidationError) -> str:
    wanted = [kind for kind in error.validator_value if kind != "null"] \
        if isinstance(error.validator_value, list) else [error.validator_value]
    name = _TYPE_NAMES[wanted[0]].format(keys=", ".join(error.schema.get("properties", ())))
    hint = " (remove the quotes)" if isinstance(error.instance, str) \
        and wanted[0] in ("integer", "boolean") else ""
    return f"must be {name}, got {type(error.instance).__name__} {shown(error.instance)}{hint}"


def _locate(path: tuple) -> tuple[str, tuple[int, ...]]:
    """A field's name in an error line (node_groups[1].count) and its place in the schema's
    order (unknown keys first), walking the schema down the path."""
    schema, name, place = SCHEMA, "", []
    for part in path:
        if "items" in schema:
            name, schema = f"{name}[{part}]", schema["items"]
            place.append(part)
        else:
            known = list(schema.get("properties", ()))
            name = f"{name}.{plain(part)}" if name else plain(part)
            place.append(known.index(part) if part in known else -1)
            schema = schema.get("properties", {}).get(part, {})
    return name or "topology", tuple(place)


def plain(value: Any) -> str:
    """value for an error line: as written when it is short printable text, else shown."""
    return value if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 80 \
        else shown(value)


def check_semantics(topology) -> list[str]:
    """Problems of the derived topology: counts, HA rules, address plan, sizes."""
    return (_check_groups(topology) + _check_roles(topology) + _check_addresses(topology)
            + _check_cidrs(topology) + _check_api(topology) + _check_ports(topology)
            + _check_sizes(topology) + _check_versions(topology) + _check_security(topology))


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
    else:
        holder = {}
        for node in k8s_nodes:
            if node.pod_cidr in holder:
                problems.append(
                    f"pods.cidr: {holder[node.pod_cidr]} and {node.name} would share the pod range "
                    f"{node.pod_cidr} (a node's range is numbered by its address's host number, "
                    f"modulo the {2 ** (prefix - topology.pod_cidr.prefixlen)} /{prefix} ranges); "
                    "widen pods.cidr, raise pods.node_prefix or change an address")
            holder.setdefault(node.pod_cidr, node.name)
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


def _check_security(topology) -> list[str]:
    """Audit log retention set for an audit log that is off."""
    if topology.security.audit_log:
        return []
    return [f"security.{key}: set, but security.audit_log is off; turn the audit log on "
            "(audit_log: true) or remove the setting"
            for key in ("audit_log_max_age_days", "audit_log_max_backups", "audit_log_max_size_mib")
            if (topology.spec.get("security") or {}).get(key) is not None]
