"""The inventory contract: one renderer from a topology (plus how to reach its machines) to Ansible.

Groups: ``etcd``, ``kube_control_plane``, ``kube_node``, ``lb`` (the nodes that hold the
virtual IP), ``k8s_cluster`` (control plane + nodes). Cluster-wide settings go to ``all.vars``,
per-node facts (address, pod CIDR) to host vars. The lab and the Pulumi program both call
``render``; only the connection settings differ between them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from kubestrata.topology import Topology

GROUP_ROLES = {"etcd": "etcd", "kube_control_plane": "control_plane", "kube_node": "worker"}


def render(topology: Topology, connection: dict[str, dict] | None = None,
           common: dict | None = None) -> dict:
    """The inventory as a dict.

    connection: per node name, the connection host vars (ansible_host, ansible_user, ...);
    by default the node's topology address. common: connection vars shared by all hosts.
    """
    connection = connection or {}
    hosts = {}
    for node in topology.nodes:
        host = {"ansible_host": str(node.address)}
        host.update(connection.get(node.name, {}))
        host.update({
            "node_address": str(node.address),
            "node_roles": list(node.roles),
        })
        if node.pod_cidr is not None:
            host["pod_cidr"] = str(node.pod_cidr)
        hosts[node.name] = host

    children = {
        group: {"hosts": {n.name: None for n in topology.with_role(role)}}
        for group, role in GROUP_ROLES.items()
    }
    children["lb"] = {"hosts": {n.name: None for n in topology.load_balancers}}
    children["k8s_cluster"] = {"children": {"kube_control_plane": None, "kube_node": None}}

    api_host, api_port = topology.api_endpoint
    cluster_vars = {
        "cluster_name": topology.name,
        "cluster_domain": topology.domain,
        "node_network_cidr": str(topology.network),
        "node_network_gateway": str(topology.gateway),
        "pod_network_cidr": str(topology.pod_cidr),
        "pod_node_prefix": topology.spec["pods"]["node_prefix"],
        "service_network_cidr": str(topology.service_cidr),
        "api_endpoint_host": api_host,
        "api_endpoint_port": api_port,
        "api_virtual_ip": str(topology.virtual_ip) if topology.virtual_ip else None,
        "container_runtime": topology.runtime,
        "cni_plugin": topology.cni,
        **{f"{component}_version": version for component, version in topology.versions.items()},
        **asdict(topology.security),
    }
    cluster_vars.update(common or {})
    return {"all": {"vars": cluster_vars, "hosts": hosts, "children": children}}


def dump(inventory: dict) -> str:
    header = "# Written by kubestrata from the topology; edit the topology, not this file.\n"
    return header + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False)


def read_groups(path: Path) -> dict[str, list[str]]:
    """Each group of a written inventory and its own hosts, in order (k8s_cluster has none of
    its own: it is kube_control_plane and kube_node)."""
    children = _read(path).get("children", {})
    return {group: list((members or {}).get("hosts") or {}) for group, members in children.items()}


def read_hosts(path: Path) -> dict[str, dict]:
    """Each host of a written inventory and its variables."""
    return {name: host or {} for name, host in (_read(path).get("hosts") or {}).items()}


def _read(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}).get("all", {})


def write(inventory: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump(inventory))
    tmp.replace(path)
    return path
