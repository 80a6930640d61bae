"""Where machines come from: lab nodes on this host, or libvirt VMs through the Pulumi program.

Both end the same way: machines that answer SSH and an inventory from the one renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kubestrata.lab.lab import Lab
from kubestrata.paths import INVENTORY_DIR
from kubestrata.topology import Topology


class Provider(Protocol):
    name: str

    def create(self, log) -> list[str]: ...
    def destroy(self) -> list[str]: ...
    def inventory_path(self) -> Path: ...
    def kubeconfig_path(self) -> Path: ...
    def ssh_hint(self, node: str) -> str: ...


class LabProvider:
    name = "lab"

    def __init__(self, topology: Topology):
        self.topology = topology
        self.lab = Lab(topology)

    def create(self, log) -> list[str]:
        return self.lab.up(log=log)

    def destroy(self) -> list[str]:
        return self.lab.down()

    def inventory_path(self) -> Path:
        return self.lab.inventory_path

    def kubeconfig_path(self) -> Path:
        return self.inventory_path().parent / "admin.conf"

    def ssh_hint(self, node: str) -> str:
        return f"kubestrata lab exec {self.topology.name} {node} -- bash"


def provider_for(name: str, topology: Topology) -> Provider:
    if name == "lab":
        return LabProvider(topology)
    raise ValueError(f"unknown provider {name!r}")


def inventory_path(provider: str, topology: Topology) -> Path:
    return INVENTORY_DIR / provider / topology.name / "hosts.yml"
