"""`kubestrata up / upgrade / down`: an ordered list of phases, each with a name, a predicate that
says whether it must run, and an action that returns a one-line summary (after k0sctl's apply
and kubeone's tasks). A failing phase stops the run with its message; nothing after it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubestrata import playbook, verify
from kubestrata.inventory import read_groups, read_hosts
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
                 status=None, verbose: bool = False, extravars: dict | None = None,
                 checked: tuple[str, ...] = verify.LAYERS,
                 limit: str | None = None) -> list[Phase]:
    """Run the playbook (on the limit's nodes), then verify every node: the checked layers
    (every one by default) when it succeeded (with a limit, those it ran on some node); when a
    layer failed, the layers that finished before it (so the report says what is proven), then
    stop with the failure."""
    path = PLAYBOOK_DIR / playbook_name
    runs: list[playbook.Result] = []

    def layers() -> str:
        result = playbook.run(path, provider.inventory_path(), verbose=verbose, out=out,
                              status=status, extravars=extravars, limit=limit)
        runs.append(result)
        if not result.ok:
            return "FAILED; verifying the layers that finished before the failure"
        return "nothing changed" if result.changes == 0 else f"{result.changes} changes"

    def check() -> str:
        result = runs[-1]
        names = list(checked) if result.ok else \
            [n for n in playbook.finished_layers(result, path) if n in checked]
        if limit:
            names = [n for n in names if n in playbook.ran_layers(result, path)]
        junit = result.run_dir / "verify-junit.xml"
        failures = []
        if names:
            collector = verify.run(provider.inventory_path(), names, junit,
                                    [n.name for n in topology.nodes])
            failures = collector.failures
            for line in verify.report(collector, names, [n.name for n in topology.nodes]):
                out(f"           {line}")
        if not result.ok:
            raise PhaseFailed(failure_message(result))
        if failures:
            raise PhaseFailed(f"{len(failures)} checks failed (JUnit XML: {junit})")
        return f"{', '.join(names)} verified (JUnit XML: {junit})"

    return [Phase("layers", layers), Phase("verify", check)]


def plan_phase(provider: Provider, *, out, status=None, verbose: bool = False,
               extravars: dict | None = None) -> Phase:
    """site.yml in Ansible's check mode against the machines as they are: what a re-run of the
    layers would change, task by task on each node; changes nothing."""
    path = PLAYBOOK_DIR / "site.yml"

    def plan() -> str:
        result = playbook.run(path, provider.inventory_path(), verbose=verbose, out=out,
                              status=status, extravars=extravars, check=True,
                              run_dir=playbook.new_run_dir("plan"))
        if not result.ok:
            raise PhaseFailed(f"the plan could not run to its end: {failure_message(result)}")
        for line in plan_lines(result, playbook.play_layers(path)):
            out(f"           {line}")
        nodes = {host for layer in result.layers for host, _ in layer.changed_tasks}
        if not nodes:
            return "nothing would change"
        return f"{result.changes} changes would be made on {len(nodes)} of the nodes"

    return Phase("plan", plan)


def plan_lines(result: playbook.Result, layer_of: dict[str, str]) -> list[str]:
    """One line per task that would change a node: layer, node, task."""
    return [f"{layer_of.get(play.name, play.name):<12} {host:<12} {task}"
            for play in result.layers for host, task in play.changed_tasks]


# The groups whose nodes `up` can remove: a worker leaves by drain, delete and reset. A control
# plane or an etcd member would need its etcd membership and certificates handled first.
RETIRABLE_GROUPS = {"kube_node", "k8s_cluster"}


class ChangeRefused(Exception):
    """A change of the topology that up does not make; the message names the fix."""


def check_nodes_stay(topology: Topology, inventory: Path) -> None:
    """Raises ChangeRefused when a node of the current inventory that the topology keeps would
    get another address or pod range: addresses are handed out in group order, so a node added
    to an earlier group moves every later one, and neither a machine's address nor a Node's pod
    range changes in place."""
    if not inventory.exists():
        return
    before = read_hosts(inventory)
    moved, groups = [], {}
    for node in topology.nodes:
        was = before.get(node.name)
        if not was:
            continue
        now = {"node_address": str(node.address),
               "pod_cidr": str(node.pod_cidr) if node.pod_cidr else None}
        changes = [f"{was.get(key)} to {value}" for key, value in now.items()
                   if was.get(key) != value]
        if changes:
            moved.append(f"{node.name} from {' and '.join(changes)}")
            groups.setdefault(node.group, []).append(was.get("node_address"))
    if moved:
        index = {group["name"]: i for i, group in enumerate(topology.spec["node_groups"])}
        pins = "; ".join(f"node_groups[{index[group]}].addresses: [{', '.join(addresses)}]"
                         for group, addresses in groups.items())
        raise ChangeRefused(
            f"the topology would move {'; '.join(moved)} (addresses are handed out in group "
            f"order, and a node's pod range follows its address): keep them with {pins}, or "
            "add nodes to the last group")


def retiring_nodes(topology: Topology, inventory: Path) -> list[str]:
    """The nodes of the current inventory that the topology no longer has. Raises ChangeRefused
    when one of them is more than a worker."""
    if not inventory.exists():
        return []
    groups: dict[str, set[str]] = {}
    for group, members in read_groups(inventory).items():
        for name in members:
            groups.setdefault(name, set()).add(group)
    names = {n.name for n in topology.nodes}
    leaving = sorted(name for name in groups if name not in names)
    for name in leaving:
        kept = groups[name] - RETIRABLE_GROUPS
        if kept:
            raise ChangeRefused(
                f"the topology no longer has {name}, which is in {', '.join(sorted(kept))}: up "
                "removes workers only (a control plane or an etcd member needs its membership "
                "moved first); put the node back in the topology")
    return leaving


def retire_phase(provider: Provider, nodes: list[str], *, out, status=None,
                 verbose: bool = False, extravars: dict | None = None) -> Phase:
    """Each node the topology dropped: drained, its Node deleted and Kubernetes removed
    (reset.yml for that node), one after another, before the machines phase removes it."""
    def retire() -> str:
        for node in nodes:
            result = playbook.run(PLAYBOOK_DIR / "reset.yml", provider.inventory_path(),
                                  verbose=verbose, out=out, status=status,
                                  extravars={**(extravars or {}), "reset_confirmed": True,
                                             "reset_node": node})
            if not result.ok:
                raise PhaseFailed(f"could not take {node} out of the cluster: "
                                  f"{failure_message(result)}")
        return f"{', '.join(nodes)} drained, deleted from the cluster and reset"
    return Phase("retire", retire, needed=lambda: bool(nodes))


def machines_phase(provider: Provider, out, retire: list[str] = (),
                   renew: list[str] = ()) -> Phase:
    """Create the machines or bring them in line with the topology (removing the retired
    ones, replacing the renewed ones by new machines); writes the inventory."""
    def machines() -> str:
        changes = provider.create(log=lambda line: out(f"           {line}"),
                                  retire=frozenset(retire), renew=frozenset(renew))
        return f"{len(changes)} changes" if changes else "nothing changed"
    return Phase("machines", machines)


def up_phases(topology: Topology, provider: Provider, *, out, plan: bool = False,
              retire: list[str] = (), **options) -> list[Phase]:
    """The retired nodes out of the cluster, the machines, then (with plan) what the layers
    would change, then the layers of site.yml and their verification (options: layer_phases')."""
    return [*([retire_phase(provider, list(retire), out=out, **options)] if retire else []),
            machines_phase(provider, out, retire),
            *([plan_phase(provider, out=out, **options)] if plan else []),
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
