"""Version rules of the Kubernetes layer, as filters that return the problems found (none: ok).

kube_upgrade_problems: the version-skew policy for an upgrade (no downgrade, one minor at a
time, no kubelet newer than the API server or too far behind it).
kube_etcd_problems: whether etcd is new enough for Kubernetes.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def _parse(version):
    match = _VERSION.match(str(version).strip())
    return tuple(int(part) for part in match.groups()) if match else None


def _show(version):
    return ".".join(str(part) for part in version)


def kube_upgrade_problems(target, apiserver_versions, kubelet_versions, max_kubelet_skew=3):
    """Problems with upgrading a cluster whose API servers and kubelets run these versions to target.

    apiserver_versions: the versions of the running API servers (one per control plane);
    kubelet_versions: node name -> kubelet version.
    """
    wanted = _parse(target)
    if wanted is None:
        return [f"the target version {target!r} is not MAJOR.MINOR.PATCH (e.g. 1.32.1)"]
    servers = [_parse(v) for v in apiserver_versions]
    if not servers or None in servers:
        shown = ", ".join(map(str, apiserver_versions)) or "none"
        return [f"cannot read the running API server versions ({shown})"]
    oldest, newest = min(servers), max(servers)
    problems = []
    if wanted < newest:
        problems.append(f"{_show(wanted)} is older than the running API server {_show(newest)}: "
                        "Kubernetes does not support downgrades")
    if wanted[0] != oldest[0] or wanted[1] > oldest[1] + 1:
        step = f"{oldest[0]}.{oldest[1] + 1}"
        problems.append(f"{_show(oldest)} -> {_show(wanted)} skips a minor version: upgrade one "
                        f"minor at a time ({_show(oldest)} -> {step}.x first)")
    for node, version in sorted(kubelet_versions.items()):
        kubelet = _parse(version)
        if kubelet is None:
            problems.append(f"cannot read the kubelet version of {node} ({version!r})")
        elif kubelet > min(newest, wanted):
            # Halfway through an upgrade (kubeadm's own order) a node's kubelet already runs
            # the target while other API servers still run the old version: resumable.
            problems.append(f"the kubelet on {node} ({_show(kubelet)}) is newer than the API "
                            f"server ({_show(newest)}): the kubelet must never be newer")
        elif wanted[1] - kubelet[1] > max_kubelet_skew:
            problems.append(f"the kubelet on {node} ({_show(kubelet)}) would be more than "
                            f"{max_kubelet_skew} minor versions older than the API server "
                            f"{_show(wanted)}: upgrade that node's kubelet first")
    return problems


def kube_etcd_problems(etcd_version, minimums):
    """Problems with etcd_version as Kubernetes' etcd; minimums: etcd minor -> oldest patch."""
    version = _parse(etcd_version)
    if version is None:
        return [f"the etcd version {etcd_version!r} is not MAJOR.MINOR.PATCH"]
    oldest_minor = min(_parse(v) for v in minimums.values())
    minimum = _parse(minimums.get(f"{version[0]}.{version[1]}", "0.0.0"))
    if version < oldest_minor[:2] + (0,) or version < minimum:
        supported = ", ".join(f"{v} or later in {minor}" for minor, v in minimums.items())
        return [f"etcd {_show(version)} is older than Kubernetes needs ({supported}, or any "
                "newer minor): set a newer versions.etcd in the topology"]
    return []


class FilterModule:
    def filters(self):
        return {"kube_upgrade_problems": kube_upgrade_problems,
                "kube_etcd_problems": kube_etcd_problems}
