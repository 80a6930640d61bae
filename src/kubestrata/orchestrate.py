"""`kubestrata up / upgrade / down`: an ordered list of phases, each with a name, a predicate that
says whether it must run, and an action that returns a one-line summary (after k0sctl's apply
and kubeone's tasks). A failing phase stops the run with its message; nothing after it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from kubestrata import playbook, verify
from kubestrata.paths import PLAYBOOK_DIR
from kubestrata.providers import Provider
from kubestrata.topology import Topology


class PhaseFailed(Exception):
    pass


@dataclass
class Phase:
    name: str
    action: Callable[[], str]
    needed: Callable[[], bool] = lambda: True


def execute(phases: list[Phase], out=print) -> None:
    for phase in phases:
        if not phase.needed():
            out(f"{phase.name:<10} skipped: not needed")
            continue
        out(f"{phase.name:<10} ...")
        started = time.monotonic()
        summary = phase.action()
        out(f"{phase.name:<10} done in {time.monotonic() - started:.1f} s: {summary}")


def failure_message(result: playbook.Result) -> str:
    if result.failures:
        first = result.failures[0]
        what = f"{first.host}: task '{first.task}' failed: {first.message}"
    elif result.unfinished:
        what = f"the playbook did not finish: {result.unfinished}"
    else:
        what = "the playbook failed"
    return f"{what} (events and output: {result.run_dir})"


def layer_phases(topology: Topology, provider: Provider, playbook_name: str, *, out,
                 status=None, verbose: bool = False, extravars: dict | None = None) -> list[Phase]:
    """Run the playbook, then verify: every layer when it succeeded; when a layer failed, the
    layers that finished before it (so the report says what is proven), then stop with the
    failure."""
    path = PLAYBOOK_DIR / playbook_name
    runs: list[playbook.Result] = []

    def layers() -> str:
        result = playbook.run(path, provider.inventory_path(), verbose=verbose, out=out,
                              status=status, extravars=extravars)
        runs.append(result)
        if not result.ok:
            return "FAILED; verifying the layers that finished before the failure"
        return "nothing changed" if result.changes == 0 else f"{result.changes} changes"

    def check() -> str:
        result = runs[-1]
        names = list(verify.LAYERS) if result.ok else \
            [n for n in playbook.finished_layers(result, path) if n in verify.LAYERS]
        junit = result.run_dir / "verify-junit.xml"
        failures = []
        if names:
            collector = verify.run(provider.inventory_path(), names, junit)
            failures = collector.failures
            for line in verify.report(collector, names, [n.name for n in topology.nodes]):
                out(f"           {line}")
        if not result.ok:
            raise PhaseFailed(failure_message(result))
        if failures:
            raise PhaseFailed(f"{len(failures)} checks failed (JUnit XML: {junit})")
        return f"{', '.join(names)} verified (JUnit XML: {junit})"

    return [Phase("layers", layers), Phase("verify", check)]


def machines_phase(provider: Provider, out) -> Phase:
    """Create the machines or bring them in line with the topology; writes the inventory."""
    def machines() -> str:
        changes = provider.create(log=lambda line: out(f"           {line}"))
        return f"{len(changes)} changes" if changes else "nothing changed"
    return Phase("machines", machines)


def up_phases(topology: Topology, provider: Provider, *, out, **options) -> list[Phase]:
    """Machines, then the layers of site.yml and their verification (options: layer_phases')."""
    return [machines_phase(provider, out),
            *layer_phases(topology, provider, "site.yml", out=out, **options)]


def upgrade_phases(topology: Topology, provider: Provider, *, out, **options) -> list[Phase]:
    """The machines phase first (it writes the inventory with the topology's new versions), then
    upgrade.yml and the verification."""
    return [machines_phase(provider, out),
            *layer_phases(topology, provider, "upgrade.yml", out=out, **options)]


def reset_phase(provider: Provider, node: str | None, keep_etcd_data: bool, *, out,
                status=None, verbose: bool = False) -> Phase:
    """playbooks/reset.yml, already confirmed: the whole cluster (its objects leave etcd unless
    keep_etcd_data) or one node. The kubeconfig of a cluster that is gone goes too."""
    def reset() -> str:
        extravars = {"reset_confirmed": True, "reset_etcd_data": not keep_etcd_data}
        if node:
            extravars["reset_node"] = node
        result = playbook.run(PLAYBOOK_DIR / "reset.yml", provider.inventory_path(),
                              verbose=verbose, out=out, status=status, extravars=extravars)
        if not result.ok:
            raise PhaseFailed(failure_message(result))
        if not node:
            provider.kubeconfig_path().unlink(missing_ok=True)
        return "nothing changed" if result.changes == 0 else f"{result.changes} changes"

    return Phase("reset", reset)


def summary(topology: Topology, provider: Provider) -> list[str]:
    host, port = topology.api_endpoint
    lines = [f"{topology.name}: {len(topology.nodes)} nodes, API endpoint https://{host}:{port}",
             f"  inventory:  {provider.inventory_path()}",
             f"  kubeconfig: {provider.kubeconfig_path()}",
             f"  kubectl:    kubestrata kubectl {topology.reference} -- get nodes"]
    for node in topology.nodes:
        lines.append(f"  {node.name:<12} {str(node.address):<15} {','.join(node.roles):<28} "
                     f"{provider.ssh_hint(node.name)}")
    return lines
