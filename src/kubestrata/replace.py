"""`kubestrata replace NAME NODE`: a node's machine replaced by a new one while the cluster keeps
serving (after kubeone's and kubespray's node replacement).

- probe: which nodes answer SSH, which etcd members are healthy (`etcdctl endpoint health` on
  each) and whom etcd lists as members, which control planes reach a ready API;
- plan: refuse, before anything changes, what would stop the cluster (the only control plane,
  the only etcd member, a quorum the healthy remaining members could not keep, no control plane
  to act from); choose a healthy control plane and etcd member for the playbooks to act from
  (they act from the first of each group unless told: kube_first_control_plane,
  remove_node_etcd_member);
- phases: remove (playbooks/remove-node.yml: drained if it answers, its Node deleted, its etcd
  member removed and its etcd certificates deleted), machines (its machine destroyed and a new
  one made, with a new SSH host key), layers (site.yml on the new node and the nodes it joins
  through), verify (every layer's checks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kubestrata import inventory as inventories, playbook, remote
from kubestrata.orchestrate import (Phase, PhaseFailed, failure_message, layer_phases,
                                    machines_phase)
from kubestrata.paths import PLAYBOOK_DIR
from kubestrata.providers import Provider
from kubestrata.topology import Topology

# On a member, as its health-check client (the etcd role's etcdctl.env): its membership view,
# only when its own endpoint is healthy.
ETCD_MEMBERS = ("set -a; . /etc/etcd/etcdctl.env; set +a; "
                "etcdctl endpoint health >/dev/null && etcdctl member list --write-out=json")
API_READY = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=5s get --raw /readyz"
PROBE_TIMEOUT = 30.0
SSH_FAILED = 255
KUBERNETES_GROUPS = ("kube_control_plane", "kube_node")


class Refused(Exception):
    pass


@dataclass(frozen=True)
class Health:
    """What the probe found (the node being replaced aside)."""
    answering: frozenset[str]               # nodes that accept an SSH login
    etcd_members: frozenset[str] | None     # whom etcd lists as members; None: no member answered
    etcd_healthy: frozenset[str]            # members whose own endpoint is healthy
    api_ready: frozenset[str]               # control planes that reach a ready API


@dataclass(frozen=True)
class Plan:
    node: str
    groups: tuple[str, ...]         # the node's inventory groups
    drain: bool                     # it answers: its pods move elsewhere before it goes
    acting: dict[str, str]          # extra variables: the healthy nodes the playbooks act from
    limit: list[str]                # the nodes site.yml runs on

    @property
    def leaves(self) -> bool:
        """Whether the cluster knows the node: a Kubernetes node or an etcd member."""
        return "etcd" in self.groups or any(g in self.groups for g in KUBERNETES_GROUPS)


def probe(inventory: Path, node: str) -> Health:
    """Ask the nodes, all at once: the node itself (does it answer?), every other etcd member
    and every other control plane."""
    try:
        hosts = remote.hostvars(inventory)
    except subprocess.CalledProcessError as exc:
        raise Refused(f"ansible-inventory cannot read {inventory}: "
                      f"{(exc.stderr or 'no output').strip()[-300:]}") from None
    groups = inventories.read_groups(inventory)
    checks = [(node, "true")]
    checks += [(m, ETCD_MEMBERS) for m in groups.get("etcd", []) if m != node]
    checks += [(c, API_READY) for c in groups.get("kube_control_plane", []) if c != node]

    def check(item: tuple[str, str]) -> subprocess.CompletedProcess | None:
        name, command = item
        try:
            return remote.run(hosts[name], command, timeout=PROBE_TIMEOUT, as_root=True)
        except subprocess.TimeoutExpired:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(checks, pool.map(check, checks)))
    answering = {name for (name, _), result in results.items()
                 if result is not None and result.returncode != SSH_FAILED}
    passed = {(name, command): result.stdout for (name, command), result in results.items()
              if result is not None and result.returncode == 0}
    healthy = [name for name, command in passed if command == ETCD_MEMBERS]
    addresses = {name: str(host["node_address"]) for name, host in hosts.items()}
    listing = passed[(healthy[0], ETCD_MEMBERS)] if healthy else None
    return Health(frozenset(answering),
                  member_nodes(listing, addresses) if listing is not None else None,
                  frozenset(healthy),
                  frozenset(name for name, command in passed if command == API_READY))


def member_nodes(listing: str, addresses: dict[str, str]) -> frozenset[str]:
    """The nodes `etcdctl member list --write-out=json` lists, found by their peer URLs'
    addresses (a member added but not started has no name yet); a member at no node's address
    stays its peer URL: it counts for the quorum all the same."""
    by_address = {address: name for name, address in addresses.items()}
    members = json.loads(listing).get("members", [])
    urls = [m["peerURLs"][0] for m in members if m.get("peerURLs")]
    return frozenset(by_address.get(urlsplit(url).hostname, url) for url in urls)


def describe(health: Health, groups: dict[str, list[str]], node: str) -> str:
    """The probe's findings on one line."""
    parts = [f"{node} {'answers' if node in health.answering else 'does not answer'} SSH"]
    if groups.get("etcd"):
        members = health.etcd_members
        parts.append("no etcd member answers" if members is None else
                     f"etcd members healthy: {', '.join(sorted(health.etcd_healthy)) or 'none'}"
                     f" of {', '.join(sorted(members))}")
    if groups.get("kube_control_plane"):
        parts.append(f"API ready from {', '.join(sorted(health.api_ready)) or 'no control plane'}")
    return "; ".join(parts)


def plan(groups: dict[str, list[str]], node: str, health: Health) -> Plan:
    """What replacing node takes; raises Refused when it would stop the cluster or cannot be
    done from the nodes that are healthy."""
    mine = tuple(group for group, hosts in groups.items() if node in hosts)
    if not mine:
        raise Refused(f"{node} is not in the inventory; make it with `kubestrata up` first")
    planes = groups.get("kube_control_plane", [])
    in_kubernetes = any(group in mine for group in KUBERNETES_GROUPS)
    ready = [c for c in planes if c in health.api_ready and c != node]
    if "kube_control_plane" in mine and planes == [node]:
        raise Refused(f"{node} is the only control plane: the cluster would have no API server "
                      "meanwhile; replace needs another control plane (an HA topology)")
    if in_kubernetes and not ready:
        why = "; ".join(f"{c}: {'API not ready' if c in health.answering else 'no SSH'}"
                        for c in planes if c != node)
        raise Refused(f"no other control plane reaches a ready API ({why}) to take {node} out "
                      "and join its successor; bring one back first")
    if "etcd" in mine:
        _check_quorum(groups["etcd"], node, health)
    limit = {node}
    for group in ("etcd", "lb"):        # their plays must reach every member
        if group in mine:
            limit.update(groups[group])
    if in_kubernetes:
        limit.add(ready[0])
    acting = {"kube_first_control_plane": ready[0]} if ready else {}
    if "etcd" in mine:
        acting["remove_node_etcd_member"] = next(
            m for m in groups["etcd"] if m in health.etcd_healthy and m != node)
    return Plan(node, mine, in_kubernetes and node in health.answering, acting, sorted(limit))


def _check_quorum(members: list[str], node: str, health: Health) -> None:
    """Removing the member and adding its successor both need a quorum of healthy members: of
    the remaining ones, then of them and the new one (not started yet)."""
    if members == [node]:
        raise Refused(f"{node} is the only etcd member: the cluster's data would go with it; "
                      "restore a backup onto a new cluster instead (docs/etcd-and-ha.md, Restore)")
    if health.etcd_members is None:
        raise Refused(f"no etcd member answers healthy besides {node}, so etcd has no quorum "
                      f"to remove it; bring the members back first, or restore a backup")
    remaining = sorted(health.etcd_members - {node})
    healthy = [m for m in remaining if m in health.etcd_healthy]
    needed = (len(remaining) + 1) // 2 + 1
    if len(healthy) < needed:
        down = [m for m in remaining if m not in health.etcd_healthy]
        raise Refused(
            f"replacing {node} would leave etcd without a quorum: {len(healthy)} of the "
            f"{len(remaining)} other etcd members {'is' if len(healthy) == 1 else 'are'} healthy "
            f"({', '.join(healthy) or 'none'}) and etcd needs {needed} to remove it and add its "
            f"successor; bring {', '.join(down)} back first")


def phases(topology: Topology, provider: Provider, chosen: Plan, *, out, status=None,
           verbose: bool = False, extravars: dict | None = None) -> list[Phase]:
    """remove, machines, then the layers and their verification."""
    extravars = {**(extravars or {}), **chosen.acting}

    def remove() -> str:
        result = playbook.run(PLAYBOOK_DIR / "remove-node.yml", provider.inventory_path(),
                              verbose=verbose, out=out, status=status,
                              extravars={**extravars, "remove_node": chosen.node,
                                         "remove_node_drain": chosen.drain})
        if not result.ok:
            raise PhaseFailed(f"could not take {chosen.node} out of the cluster: "
                              f"{failure_message(result)}")
        done = [task for layer in result.layers for _, task in layer.changed_tasks]
        return "; ".join(done) if done else f"the cluster no longer knew {chosen.node}"

    return [Phase("remove", remove, needed=lambda: chosen.leaves),
            machines_phase(provider, out, renew=[chosen.node]),
            *layer_phases(topology, provider, "site.yml", out=out, status=status,
                          verbose=verbose, extravars=extravars, limit=",".join(chosen.limit))]


def host_key(known_hosts: Path, node: str) -> str:
    """The SHA256 fingerprint (as ssh-keygen -l shows it) of node's key in known_hosts, or ""."""
    lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    for line in lines:
        names, _, key = line.partition(" ")
        if node in names.split(","):
            digest = hashlib.sha256(base64.b64decode(key.split()[1])).digest()
            return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    return ""
