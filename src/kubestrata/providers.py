"""Where machines come from: lab nodes on this host, or libvirt VMs through the Pulumi program.

Both end the same way: machines that answer SSH and an inventory from the one renderer.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Protocol

from kubestrata import gobuild, locks, paths, pulumi_cli, remote, vms
from kubestrata.lab.lab import Lab, exclusive as hold_lab
from kubestrata.topology import Topology

SSH_TIMEOUT = 600.0     # a VM's first boot with cloud-init; software emulation is slower
# A VM is ready when cloud-init has finished its first boot (it installs packages and restarts
# sshd meanwhile). Exit 2 is done with recoverable errors (deprecated keys among them); only a
# critical failure (1) stops `up`, showing cloud-init's own account of it.
FIRST_BOOT_DONE = ("status=$(cloud-init status --wait --long); "
                   "if [ $? -eq 1 ]; then echo \"$status\"; exit 1; fi")
INFRA_DIR = paths.PROJECT_ROOT / "infra"
PULUMI_PROJECT_NAME = "kubestrata"     # Pulumi.yaml's name: the namespace of the stack config


class ProviderError(Exception):
    pass


class Provider(Protocol):
    name: str

    def exclusive(self, command: str): ...
    def create(self, log, retire: frozenset[str] = frozenset(),
               renew: frozenset[str] = frozenset()) -> list[str]: ...
    def destroy(self) -> list[str]: ...
    def inventory_path(self) -> Path: ...
    def known_hosts_path(self) -> Path: ...
    def kubeconfig_path(self) -> Path: ...
    def ssh_hint(self, node: str) -> str: ...
    def console_argv(self, node: str) -> list[str]: ...
    def kubectl_argv(self, kubectl: str, args: list[str]) -> list[str]: ...


class LabProvider:
    name = "lab"

    def __init__(self, topology: Topology):
        self.topology = topology
        self.lab = Lab(topology)

    def exclusive(self, command: str):
        """Hold the lab for command (see lab.lab.exclusive)."""
        return hold_lab(self.topology.name, command)

    def create(self, log, retire: frozenset[str] = frozenset(),
               renew: frozenset[str] = frozenset()) -> list[str]:
        return self.lab.up(log=log, retire=retire, renew=renew)

    def destroy(self) -> list[str]:
        return self.lab.down()

    def inventory_path(self) -> Path:
        return self.lab.inventory_path

    def known_hosts_path(self) -> Path:
        return self.lab.known_hosts

    def kubeconfig_path(self) -> Path:
        return self.inventory_path().parent / "admin.conf"

    def ssh_hint(self, node: str) -> str:
        return f"kubestrata lab exec {self.topology.reference} {node} -- bash"

    def console_argv(self, node: str) -> list[str]:
        """A lab node's console is read-only (its log): a root shell on it instead."""
        return self.lab.exec_argv(node, ["bash"])

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

    def _workspace(self, log):
        """LocalWorkspaceOptions for the stack, once everything it needs is there."""
        if shutil.which("pulumi") is None and shutil.which("go") is None:
            raise ProviderError("the Pulumi CLI is not installed; install it (docs/libvirt.md: "
                                "curl -fsSL https://get.pulumi.com | sh) or use --provider lab")
        project = paths.PULUMI_PROJECT
        if not (project / f"Pulumi.{self.topology.name}.yaml").exists():
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
        try:
            env_vars = pulumi_cli.libvirt_plugin_env(log=log)
        except gobuild.GoBuildError as exc:
            raise ProviderError(str(exc)) from None
        # The project directory: Pulumi.yaml's backend and Pulumi.<stack>.yaml's config apply
        # as for `pulumi up` run there.
        return automation.LocalWorkspaceOptions(work_dir=str(project), pulumi_command=command,
                                                env_vars=env_vars)

    def _pulumi(self, command: str, operation, log):
        """operation(stack, on_output) on the stack, infra/'s program run inline (the engine
        needs no Python language host for it). Pulumi's output goes to log and to
        .kubestrata/runs/<stamp>-pulumi-<command>/output.log; a failure is a ProviderError of
        one line naming the stack and that file."""
        from pulumi import automation
        from kubestrata import playbook
        options = self._workspace(log)
        output = playbook.new_run_dir(f"pulumi-{command}") / "output.log"
        with output.open("a") as kept:
            def on_output(line: str) -> None:
                kept.write(line + "\n")
                kept.flush()
                log(line)
            try:
                stack = automation.create_or_select_stack(
                    stack_name=self.topology.name, project_name=PULUMI_PROJECT_NAME,
                    program=infra_program(), opts=options)
                return operation(stack, on_output)
            except automation.errors.CommandError as exc:
                kept.write(f"{exc}\n")
                raise ProviderError(f"pulumi {command} of libvirt stack {self.topology.name} "
                                    f"failed: {_first_error(str(exc))} (Pulumi's output: "
                                    f"{output})") from None

    def create(self, log, retire: frozenset[str] = frozenset(),
               renew: frozenset[str] = frozenset()) -> list[str]:
        """pulumi up, after a refresh (what was deleted by hand is made again); the program
        follows the topology, so retired nodes' VMs go with it, and each renewed node gets a
        new disk, seed and domain (vms.renew: kept until a pulumi up makes them)."""
        for node in sorted(renew):
            vms.renew(self.topology.name, node)
        result = self._pulumi("up", lambda stack, on_output: stack.up(
            on_output=on_output, show_secrets=False, suppress_outputs=True, color="never",
            refresh=True), log)
        changes = [f"{count} {kind}" for kind, count in
                   (result.summary.resource_changes or {}).items() if kind != "same" and count]
        waiting = remote.wait_until_ready(remote.hostvars(self.inventory_path()), SSH_TIMEOUT,
                                          ready=FIRST_BOOT_DONE)
        if waiting:
            consoles = ", ".join(f"{shlex.join(self.console_argv(n))} (log: "
                                 f"{vms.console_log(self.topology, self.topology.node(n))})"
                                 for n in waiting)
            problems = "; ".join(f"{name}: {why}" for name, why in waiting.items())
            raise ProviderError(f"machines not ready: {problems}. Read their serial console: "
                                f"{consoles}")
        return changes

    def destroy(self, log=lambda line: print(f"  {line}", flush=True)) -> list[str]:
        """pulumi destroy after a refresh, its progress passed to log line by line."""
        result = self._pulumi("destroy", lambda stack, on_output: stack.destroy(
            on_output=on_output, show_secrets=False, color="never", refresh=True), log)
        return [f"{count} {kind}" for kind, count in
                (result.summary.resource_changes or {}).items() if count]

    def inventory_path(self) -> Path:
        return vms.inventory_path(self.topology)

    def known_hosts_path(self) -> Path:
        return vms.known_hosts_path(self.topology)

    def kubeconfig_path(self) -> Path:
        return self.inventory_path().parent / "admin.conf"

    def console_argv(self, node: str) -> list[str]:
        """virsh console of the node's domain, on its hypervisor (from the inventory)."""
        self.topology.node(node)                        # a TopologyError naming the nodes
        hosts = remote.hostvars(self.inventory_path()) if self.inventory_path().exists() else {}
        if node not in hosts:
            raise ProviderError(f"{node} is not in {self.inventory_path()} yet: run kubestrata "
                                f"up {self.topology.reference} --provider libvirt")
        return ["virsh", "-c", hosts[node]["libvirt_uri"], "console",
                hosts[node]["libvirt_domain"]]

    def ssh_hint(self, node: str) -> str:
        if node not in self._hosts:
            return f"(not in {self.inventory_path()} yet)"
        return " ".join(remote.ssh_argv(self._hosts[node]))

    def kubectl_argv(self, kubectl: str, args: list[str]) -> list[str]:
        return [kubectl, "--kubeconfig", str(self.kubeconfig_path()), *args]

    @functools.cached_property
    def _hosts(self) -> dict[str, dict]:
        return remote.hostvars(self.inventory_path())


def infra_program():
    """program() of infra/program.py, imported as `pulumi up` has it (infra/ on sys.path)."""
    sys.path.insert(0, str(INFRA_DIR))
    try:
        from program import program
    finally:
        sys.path.remove(str(INFRA_DIR))
    return program


def _first_error(output: str) -> str:
    """What went wrong, on one line: the first error of Pulumi's diagnostics (or of its output)
    that says more than that the update failed, with the lines indented below it."""
    lines = output.splitlines()
    if "Diagnostics:" in lines:
        lines = lines[lines.index("Diagnostics:"):]
    for number, line in enumerate(lines):
        reason = line.partition("error:")[2].strip()
        if not reason or reason.startswith(("update failed", "an unhandled error occurred")):
            continue
        indent = len(line) - len(line.lstrip())
        for more in lines[number + 1:]:
            if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                break
            reason += " " + more.strip()
        return reason[:400]
    lines = [line.strip() for line in lines if line.strip()]
    return (lines[-1] if lines else "no output")[:400]


PROVIDERS = {"lab": LabProvider, "libvirt": LibvirtProvider}


def provider_for(name: str, topology: Topology) -> Provider:
    return PROVIDERS[name](topology)
