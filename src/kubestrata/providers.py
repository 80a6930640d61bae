"""Where machines come from: lab nodes on this host, or libvirt VMs through the Pulumi program.

Both end the same way: machines that answer SSH and an inventory from the one renderer.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Protocol

from kubestrata import gobuild, locks, pulumi_cli, remote, vms
from kubestrata.lab.lab import Lab, exclusive as hold_lab
from kubestrata.paths import PROJECT_ROOT
from kubestrata.topology import Topology

SSH_TIMEOUT = 600.0     # a VM's first boot with cloud-init; software emulation is slower
# A VM is ready when cloud-init has finished its first boot (it installs packages and restarts
# sshd meanwhile). Exit 2 is done with recoverable errors (deprecated keys among them); only a
# critical failure (1) stops `up`, showing cloud-init's own account of it.
FIRST_BOOT_DONE = ("status=$(cloud-init status --wait --long); "
                   "if [ $? -eq 1 ]; then echo \"$status\"; exit 1; fi")


class ProviderError(Exception):
    pass


class Provider(Protocol):
    name: str

    def exclusive(self, command: str): ...
    def create(self, log) -> list[str]: ...
    def destroy(self) -> list[str]: ...
    def inventory_path(self) -> Path: ...
    def kubeconfig_path(self) -> Path: ...
    def ssh_hint(self, node: str) -> str: ...
    def kubectl_argv(self, kubectl: str, args: list[str]) -> list[str]: ...


class LabProvider:
    name = "lab"

    def __init__(self, topology: Topology):
        self.topology = topology
        self.lab = Lab(topology)

    def exclusive(self, command: str):
        """Hold the lab for command (see lab.lab.exclusive)."""
        return hold_lab(self.topology.name, command)

    def create(self, log) -> list[str]:
        return self.lab.up(log=log)

    def destroy(self) -> list[str]:
        return self.lab.down()

    def inventory_path(self) -> Path:
        return self.lab.inventory_path

    def kubeconfig_path(self) -> Path:
        return self.inventory_path().parent / "admin.conf"

    def ssh_hint(self, node: str) -> str:
        return f"kubestrata lab exec {self.topology.reference} {node} -- bash"

    def kubectl_argv(self, kubectl: str, args: list[str]) -> list[str]:
        """kubectl in the lab's namespace, the only place the API endpoint is reachable."""
        return ["ip", "netns", "exec", self.lab.namespace, kubectl,
                "--kubeconfig", str(self.kubeconfig_path()), *args]


class LibvirtProvider:
    """The Pulumi program of infra/ run through the Automation API, stack = topology name."""
    name = "libvirt"

    def __init__(self, topology: Topology):
        self.topology = topology

    def exclusive(self, command: str):
        """Hold the stack for command; raises locks.Busy, naming the holder, when another
        command has it."""
        name = self.topology.name
        return locks.exclusive(vms.state_dir(name).parent / ".locks" / f"{name}.lock",
                               f"libvirt stack {name}", command)

    def _stack(self, log=print):
        if shutil.which("pulumi") is None and shutil.which("go") is None:
            raise ProviderError("the Pulumi CLI is not installed; install it (docs/libvirt.md: "
                                "curl -fsSL https://get.pulumi.com | sh) or use --provider lab")
        if not pulumi_cli.runs_project_programs():
            raise ProviderError(
                "no Pulumi CLI on PATH, and the one kubestrata builds from its Go module has no "
                f"Python language host ({pulumi_cli.LANGUAGE_HOST}) to run infra/: install the "
                "Pulumi CLI (docs/libvirt.md: curl -fsSL https://get.pulumi.com | sh) or use "
                "--provider lab")
        if not (PROJECT_ROOT / f"Pulumi.{self.topology.name}.yaml").exists():
            raise ProviderError(f"no stack file Pulumi.{self.topology.name}.yaml; copy one of "
                                "the four and set kubestrata:topology to your topology file")
        if not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & set(os.environ):
            raise ProviderError("set PULUMI_CONFIG_PASSPHRASE (or _FILE): the local state "
                                "backend encrypts the stack's secrets with it")
        from pulumi import automation
        try:
            command = pulumi_cli.command(log=log)
        except (gobuild.GoBuildError, OSError) as exc:
            raise ProviderError(f"no Pulumi CLI on PATH, and building it failed: {exc}") from None
        return automation.create_or_select_stack(
            stack_name=self.topology.name, work_dir=str(PROJECT_ROOT),
            opts=automation.LocalWorkspaceOptions(pulumi_command=command))

    def create(self, log) -> list[str]:
        stack = self._stack(log)
        result = stack.up(on_output=log, show_secrets=False, suppress_outputs=True, color="never")
        changes = [f"{count} {kind}" for kind, count in
                   (result.summary.resource_changes or {}).items() if kind != "same" and count]
        waiting = remote.wait_until_ready(remote.hostvars(self.inventory_path()), SSH_TIMEOUT,
                                          ready=FIRST_BOOT_DONE)
        if waiting:
            consoles = ", ".join(f"virsh console {vms.domain_name(self.topology, self.topology.node(n))}"
                                 f" (log: {vms.console_log(self.topology, self.topology.node(n))})"
                                 for n in waiting)
            problems = "; ".join(f"{name}: {why}" for name, why in waiting.items())
            raise ProviderError(f"machines not ready: {problems}. Read their serial console: "
                                f"{consoles}")
        return changes

    def destroy(self) -> list[str]:
        result = self._stack().destroy(on_output=lambda line: None, show_secrets=False,
                                       color="never")
        return [f"{count} {kind}" for kind, count in
                (result.summary.resource_changes or {}).items() if count]

    def inventory_path(self) -> Path:
        return vms.inventory_path(self.topology)

    def kubeconfig_path(self) -> Path:
        return self.inventory_path().parent / "admin.conf"

    def ssh_hint(self, node: str) -> str:
        if node not in self._hosts:
            return f"(not in {self.inventory_path()} yet)"
        return " ".join(remote.ssh_argv(self._hosts[node]))

    def kubectl_argv(self, kubectl: str, args: list[str]) -> list[str]:
        return [kubectl, "--kubeconfig", str(self.kubeconfig_path()), *args]

    @functools.cached_property
    def _hosts(self) -> dict[str, dict]:
        return remote.hostvars(self.inventory_path())


PROVIDERS = {"lab": LabProvider, "libvirt": LibvirtProvider}


def provider_for(name: str, topology: Topology) -> Provider:
    return PROVIDERS[name](topology)
