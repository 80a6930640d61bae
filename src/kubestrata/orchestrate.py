"""`kubestrata up / upgrade / down`: an ordered list of phases, each with a name, a predicate that
says whether it must run, and an action that returns a one-line summary (after k0sctl's apply
and kubeone's tasks). A failing phase stops the run with its message; nothing after it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from kubestrata import playbook
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


def run_layers(provider: Provider, playbook_name: str, *, verbose: bool, out,
               status=None, tags: list[str] | None = None) -> str:
    result = playbook.run(PLAYBOOK_DIR / playbook_name, provider.inventory_path(), tags=tags,
                          verbose=verbose, out=out, status=status)
    if not result.ok:
        first = result.failures[0] if result.failures else None
        raise PhaseFailed(
            (f"{first.host}: task '{first.task}' failed: {first.message}" if first
             else "the playbook failed") + f" (events and output: {result.run_dir})")
    return "nothing changed" if result.changes == 0 else f"{result.changes} changes"


def up_phases(topology: Topology, provider: Provider, *, verbose: bool, out,
              status=None) -> list[Phase]:
    def machines() -> str:
        changes = provider.create(log=lambda line: out(f"           {line}"))
        return f"{len(changes)} changes" if changes else "nothing changed"

    def layers() -> str:
        return run_layers(provider, "site.yml", verbose=verbose, out=out, status=status)

    return [
        Phase("machines", machines),
        Phase("layers", layers),
    ]


def summary(topology: Topology, provider: Provider) -> list[str]:
    host, port = topology.api_endpoint
    lines = [f"{topology.name}: {len(topology.nodes)} nodes, API endpoint https://{host}:{port}",
             f"  inventory:  {provider.inventory_path()}",
             f"  kubeconfig: {provider.kubeconfig_path()}"]
    for node in topology.nodes:
        lines.append(f"  {node.name:<12} {str(node.address):<15} {','.join(node.roles):<28} "
                     f"{provider.ssh_hint(node.name)}")
    return lines
