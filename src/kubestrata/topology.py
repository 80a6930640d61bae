"""The topology: which nodes exist, their roles, sizes and addresses, the networks and versions.

It is the single source of truth. A topology file is checked field by field (see
``validation``), overrides are merged in, and everything derived from it (node names,
addresses, per-node pod CIDRs, the API endpoint) is computed here once. The Pulumi
program, the lab, the inventory and the tests read the resulting ``Topology``.
"""

from __future__ import annotations

import copy
import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubestrata import validation
from kubestrata.paths import TOPOLOGY_DIR

NAMES = ("all-in-one", "single-master", "multi-master", "ha-external-etcd")


class TopologyError(Exception):
    """A topology that cannot be used; ``problems`` holds one line per field."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Node:
    name: str
    group: str
    roles: tuple[str, ...]
    address: ipaddress.IPv4Address
    cpus: int
    memory_mib: int
    disk_gib: int
    pod_cidr: ipaddress.IPv4Network | None
    libvirt_uri: str | None

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def is_kubernetes_node(self) -> bool:
        return self.has("control_plane") or self.has("worker")


@dataclass(frozen=True)
class Security:
    """The opt-in security extras (topology key security), the schema's defaults filled in."""
    secrets_encryption: bool
    audit_log: bool
    audit_log_max_age_days: int
    audit_log_max_backups: int
    audit_log_max_size_mib: int


@dataclass(frozen=True)
class Topology:
    name: str
    source: str
    spec: dict
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    domain: str
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    virtual_ip: ipaddress.IPv4Address | None
    api_port: int
    runtime: str
    cni: str
    versions: dict[str, str]
    security: Security
    nodes: tuple[Node, ...]

    @property
    def reference(self) -> str:
        """How a printed command names this topology: its name when it is a built-in one,
        else its file, as given."""
        if self.name in NAMES and Path(self.source) == resolve(self.name):
            return self.name
        return shlex.quote(self.source)

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has(role)]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError([f"no node {name!r} in topology {self.name}; its nodes: "
                             + ", ".join(n.name for n in self.nodes)])

    def fqdn(self, node: Node) -> str:
        return f"{node.name}.{self.domain}"

    @property
    def is_ha(self) -> bool:
        return self.virtual_ip is not None

    @property
    def load_balancers(self) -> list[Node]:
        """Nodes that hold the virtual IP: dedicated `lb` nodes, else the control planes."""
        if not self.is_ha:
            return []
        return self.with_role("lb") or self.with_role("control_plane")

    @property
    def api_endpoint(self) -> tuple[str, int]:
        if self.virtual_ip is not None:
            return str(self.virtual_ip), self.api_port
        return str(self.with_role("control_plane")[0].address), self.api_port


def resolve(name_or_file: str) -> Path:
    """The file of a built-in topology name, or the path given."""
    if name_or_file in NAMES:
        return TOPOLOGY_DIR / f"{name_or_file}.yaml"
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise TopologyError([f"topology: no file at {path}; give one of "
                                 f"{', '.join(NAMES)} or the path of a topology file"])
        return path
    raise TopologyError([f"topology: unknown topology {name_or_file!r}; give one of "
                         f"{', '.join(NAMES)} or the path of a topology file"])


def load(name_or_file: str, overrides: dict | None = None) -> Topology:
    """Read, merge overrides into, check and derive a topology. Raises TopologyError."""
    path = resolve(name_or_file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TopologyError([f"topology: cannot read {path}: {exc.strerror}"]) from None
    spec = parse_yaml(data, f"topology: {path}")
    if not isinstance(spec, dict):
        raise TopologyError([f"topology: {path} must hold a mapping of settings (name, "
                             "network, ...); start from one of topologies/*.yaml"])
    if overrides:
        spec = merge(spec, overrides)
    problems = validation.check(spec)
    if problems:
        raise TopologyError(problems)
    topology = derive(spec, str(path))
    problems = validation.check_semantics(topology)
    if problems:
        raise TopologyError(problems)
    return topology


def merge(spec: dict, overrides: dict) -> dict:
    """Deep-merge overrides into spec; node_groups merge by group name."""
    merged = copy.deepcopy(spec)
    for key, value in overrides.items():
        if key == "node_groups" and isinstance(merged.get(key), list):
            merged[key] = _merge_groups(merged.get(key) or [], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_groups(groups: list, overrides) -> list:
    """Groups overridden by name ({"worker": {"count": 3}}); a list or another value replaces
    them (and validation says what is wrong with it)."""
    if not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(groups)
    by_name = {g.get("name"): g for g in merged if isinstance(g, dict)}
    for name, value in overrides.items():
        if value is not None and not isinstance(value, dict):
            raise TopologyError([f"node_groups.{name}: give the group as a mapping of its "
                                 f"settings, e.g. --set node_groups.{name}.count=3"])
        if name in by_name:
            by_name[name].update(copy.deepcopy(value or {}))
        else:
            merged.append({"name": name, **copy.deepcopy(value or {})})
    return merged


def parse_assignment(text: str) -> dict:
    """`node_groups.worker.count=3` -> {"node_groups": {"worker": {"count": 3}}}."""
    path, sep, raw = text.partition("=")
    keys = path.split(".")
    if not sep or not all(keys):
        raise TopologyError([f"--set {validation.plain(text)}: write it as FIELD.PATH=VALUE, "
                             "e.g. node_groups.worker.count=3"])
    value = parse_yaml(raw, f"--set {validation.plain(text)}: the value") if raw else ""
    for key in reversed(keys):
        value = {key: value}
    return value


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader whose every failure is a YAMLError: its constructors raise ValueError,
    KeyError, AttributeError, IndexError ... on values such as 2001-02-30, !!bool maybe or
    !!timestamp 1."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{validation.shown(node.value)} is not a valid "
                            f"{node.tag.rpartition(':')[2]} ({exc})",
                node.start_mark) from None


def parse_yaml(data: str | bytes, what: str):
    """The YAML document in data; a TopologyError of one line, starting with what, when it is
    not valid YAML."""
    try:
        return yaml.load(data, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise TopologyError([f"{what} {_yaml_problem(exc)}"]) from None
    except RecursionError:
        raise TopologyError([f"{what} is nested too deeply to read; flatten it"]) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found and where, on one line (its own message spans several), and the fix."""
    if isinstance(exc, yaml.reader.ReaderError) and exc.encoding == "unicode":
        return (f"holds the control character 0x{exc.character:02x} at position {exc.position}, "
                "which YAML does not allow; remove it")
    if isinstance(exc, yaml.reader.ReaderError):
        return (f"is not {exc.encoding} text (byte 0x{exc.character:02x} at position "
                f"{exc.position}: {exc.reason}); save it as UTF-8")
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    else:
        where = str(exc)
    return f"is not valid YAML: {' '.join(where.split())}; fix the YAML"


def derive(spec: dict, source: str) -> Topology:
    """Compute node names, addresses and pod CIDRs from a structurally valid spec."""
    net = ipaddress.ip_network(spec["network"]["cidr"])
    gateway = ipaddress.ip_address(spec["network"].get("gateway") or net[1])
    api = spec.get("api") or {}
    vip = ipaddress.ip_address(api["virtual_ip"]) if api.get("virtual_ip") else None
    pods = spec["pods"]
    pod_cidr = ipaddress.ip_network(pods["cidr"])

    # Fixed addresses are held before any is handed out: a node added to an earlier group
    # takes a free address, not a later group's fixed one.
    taken = {gateway, vip} | {ipaddress.ip_address(address) for group in spec["node_groups"]
                              for address in (group.get("addresses") or [])[:group["count"]]}
    next_host = spec["network"]["first_host"]
    nodes = []
    for group in spec["node_groups"]:
        fixed = group.get("addresses") or []
        for index in range(group["count"]):
            if index < len(fixed):
                address = ipaddress.ip_address(fixed[index])
            else:
                address, next_host = _next_free(net, next_host, taken)
            taken.add(address)
            roles = tuple(group["roles"])
            k8s = "control_plane" in roles or "worker" in roles
            nodes.append(Node(
                name=f"{group['name']}-{index + 1}",
                group=group["name"],
                roles=roles,
                address=address,
                cpus=group["cpus"],
                memory_mib=group["memory_mib"],
                disk_gib=group["disk_gib"],
                pod_cidr=_pod_range(pod_cidr, pods["node_prefix"], net, address) if k8s else None,
                libvirt_uri=group.get("libvirt_uri"),
            ))
    return Topology(
        name=spec["name"],
        source=source,
        spec=spec,
        network=net,
        gateway=gateway,
        domain=spec["network"]["domain"],
        pod_cidr=pod_cidr,
        service_cidr=ipaddress.ip_network(spec["services"]["cidr"]),
        virtual_ip=vip,
        api_port=api.get("port") or validation.APISERVER_PORT,
        runtime=spec["runtime"],
        cni=spec["cni"],
        versions=dict(spec["versions"]),
        security=_security(spec.get("security") or {}),
        nodes=tuple(nodes),
    )


def _security(given: dict) -> Security:
    """The security settings given, each one left out (or null) at the schema's default."""
    fields = validation.SCHEMA["properties"]["security"]["properties"]
    return Security(**{key: field["default"] if given.get(key) is None else given[key]
                       for key, field in fields.items()})


def _pod_range(pod_cidr, node_prefix: int, net, address):
    """A node's slice of the pod CIDR: numbered by its address's host number (modulo the number
    of slices), so it stays while the address does, whatever nodes come or go; two nodes whose
    numbers meet are the semantic check's. None when node_prefix is wider than the pod CIDR."""
    if node_prefix < pod_cidr.prefixlen:
        return None
    slices = 2 ** (node_prefix - pod_cidr.prefixlen)
    index = (int(address) - int(net.network_address)) % slices
    return ipaddress.ip_network((int(pod_cidr.network_address) + index * 2 ** (32 - node_prefix),
                                 node_prefix))


def _next_free(net, host: int, taken: set):
    """The next address at host number >= host that no one holds (or one past the network)."""
    while host < net.num_addresses - 1:
        candidate = net[host]
        host += 1
        if candidate not in taken:
            return candidate, host
    # Out of room: hand out an address past the network (wrapping at the end of the IPv4
    # space); the semantic check names the fix.
    past = int(net.broadcast_address) + host - net.num_addresses + 2
    return ipaddress.IPv4Address(past % 2 ** 32), host + 1
