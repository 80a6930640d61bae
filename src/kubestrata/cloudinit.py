"""A node's NoCloud seed (user-data, meta-data, network-config), rendered from templates/cloud-init.

Everything comes from the topology: name and FQDN, the static address, gateway and DNS, the
names of all nodes for /etc/hosts. Nothing in the seed needs the internet at first boot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import jinja2

from kubestrata import paths, vms
from kubestrata.hostkeys import HostKey
from kubestrata.topology import Node, Topology


@dataclass(frozen=True)
class Seed:
    user_data: str = field(repr=False)   # holds the node's private SSH host key
    meta_data: str
    network_config: str


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.TEMPLATE_DIR / "cloud-init"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    # A JSON string is a YAML scalar: values are quoted whatever characters they hold.
    env.filters["quote"] = json.dumps
    return env


def render(topology: Topology, node: Node, admin_user: str, ssh_public_key: str,
           host_key: HostKey) -> Seed:
    env = _environment()
    values = {
        "topology": topology,
        "node": node,
        "fqdn": topology.fqdn(node),
        "instance_id": vms.domain_name(topology, node),
        "address": f"{node.address}/{topology.network.prefixlen}",
        "mac": vms.mac_address(topology, node),
        "admin_user": admin_user,
        "ssh_public_key": ssh_public_key.strip(),
        "host_key": host_key,
    }
    return Seed(*(env.get_template(name).render(values) for name in
                  ("user-data.yaml.j2", "meta-data.yaml.j2", "network-config.yaml.j2")))
