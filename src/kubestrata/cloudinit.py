"""A node's NoCloud seed (user-data, meta-data, network-config), rendered from templates/cloud-init,
and the ISO that carries it.

Everything comes from the node itself: name and FQDN, the static address, gateway and DNS, the
admin key, its host key. Other nodes are not named (Ansible's prepare role lists every node in
/etc/hosts), so scaling leaves the other nodes' seeds as they are. The instance-id ends in a
hash of the seed's content: cloud-init runs its per-instance modules again exactly when the
seed changed. Nothing in the seed needs the internet at first boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from kubestrata import paths, vms
from kubestrata.hostkeys import HostKey
from kubestrata.topology import Node, Topology

FILES = ("user-data", "meta-data", "network-config")


class SeedError(Exception):
    pass


@dataclass(frozen=True)
class Seed:
    user_data: str = field(repr=False)   # holds the node's private SSH host key
    meta_data: str
    network_config: str
    digest: str                          # of the content; not secret (a hash of 256 random bits)

    def write_iso(self, path: Path) -> None:
        """The seed as a NoCloud ISO (volume label cidata) at path, mode 0600: mkisofs, as
        genisoimage installs it, run as the libvirt provider ran it for its cloud-init disks."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as directory:   # 0700
            for name, text in zip(FILES, (self.user_data, self.meta_data, self.network_config)):
                Path(directory, name).write_text(text)
            iso = Path(directory, "seed.iso")
            try:
                made = subprocess.run(["mkisofs", "-quiet", "-output", str(iso), "-volid",
                                       "cidata", "-joliet", "-rock",
                                       *(str(Path(directory, n)) for n in FILES)],
                                      capture_output=True, text=True, timeout=120)
            except OSError as error:
                raise SeedError(f"mkisofs cannot run ({error.strerror}); it builds the VMs' "
                                "cloud-init seeds: apt-get install genisoimage") from None
            if made.returncode != 0:
                raise SeedError(f"mkisofs could not build the seed {path}: "
                                + " ".join(made.stderr.split())[-300:])
            iso.chmod(0o600)
            os.replace(iso, path)


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
        "address": f"{node.address}/{topology.network.prefixlen}",
        "mac": vms.mac_address(topology, node),
        "admin_user": admin_user,
        "ssh_public_key": ssh_public_key.strip(),
        "host_key": host_key,
    }
    user_data, network_config = (env.get_template(name).render(values) for name in
                                 ("user-data.yaml.j2", "network-config.yaml.j2"))
    digest = hashlib.sha256(f"{node.name}\0{user_data}\0{network_config}".encode()).hexdigest()[:12]
    meta_data = env.get_template("meta-data.yaml.j2").render(
        node=node, instance_id=f"{vms.domain_name(topology, node)}-{digest}")
    return Seed(user_data, meta_data, network_config, digest)
