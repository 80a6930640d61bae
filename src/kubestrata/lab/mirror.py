"""The lab's package mirror: the .debs the layers install, fetched once on the host, served
over HTTP inside the lab namespace. Nodes have no route out; this is all the archive they see.

It is an air-gapped mirror in miniature: a flat apt repository (``deb [trusted=yes] URL ./``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from kubestrata.cachedir import locked
from kubestrata.lab import debian
from kubestrata.paths import CACHE_DIR

PORT = 3142

# What the layers install from the nodes' own suite (their role defaults name the same packages).
PACKAGES = (
    # prepare
    "ca-certificates", "curl", "gnupg", "iptables", "conntrack", "socat", "ethtool", "ebtables",
    "kmod", "procps", "iputils-ping", "chrony",
    # CNI
    "containernetworking-plugins",
    # etcd (the suite's 3.5.16: the version the etcd upgrade test starts from) and the HA endpoint
    "etcd-server", "etcd-client", "haproxy", "keepalived",
)


# Newer packages from other suites, served as one more flat repository per suite at /SUITE/:
# Kubernetes 1.36 needs containerd 2 (trixie has 1.7) and kubeadm 1.36 an etcd of at least
# 3.5.24 (trixie has 3.5.16), so they come from sid. Each .deb is fetched alone: its
# dependencies must be in the base rootfs or the main repository (these need only libc6,
# libseccomp2, runc and systemd). Roles pin the version they want; where two suites offer a
# package, the pin chooses. sid moves on: a new cache fetches sid's version of the day, which a
# pin older than it no longer matches (the layer then names the versions on offer).
OTHER_SUITES = {"sid": ("containerd", "runc", "etcd-server", "etcd-client")}


def key(rootfs: Path) -> str:
    other = [f"{suite}/{name}" for suite, names in OTHER_SUITES.items() for name in names]
    text = "|".join([rootfs.name, debian.archive_url(), *PACKAGES, *other])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure(rootfs: Path, log=print) -> Path:
    """The cached mirror directory for nodes built from rootfs; downloaded on first use."""
    target = CACHE_DIR / "mirror" / f"{debian.SUITE}-{key(rootfs)}"
    if (target / "Packages").exists():
        return target
    with locked(target.parent):
        if (target / "Packages").exists():               # another process built it meanwhile
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        log(f"building the lab package mirror ({len(PACKAGES)} packages and their dependencies) "
            f"in {target}")
        debian.download(list(PACKAGES), building, status_file=rootfs / "var" / "lib" / "dpkg" / "status")
        shutil.rmtree(building / "partial", ignore_errors=True)
        (building / "lock").unlink(missing_ok=True)
        # Scanned before the suites' directories exist: dpkg-scanpackages looks into subdirectories.
        (building / "Packages").write_text(_scan(building))
        for suite, names in OTHER_SUITES.items():
            for name in names:
                debian.fetch(name, building / suite, suite=suite)
            (building / suite / "Packages").write_text(_scan(building / suite))
        building.rename(target)
    return target


def _scan(directory: Path) -> str:
    result = subprocess.run(["dpkg-scanpackages", "-m", ".", "/dev/null"], cwd=directory,
                            capture_output=True, text=True, check=True)
    return result.stdout


def apt_sources(gateway: str) -> str:
    """The nodes' apt sources: the main repository, then one per other suite."""
    return "".join(f"deb [trusted=yes] http://{gateway}:{PORT}/{path} ./\n"
                   for path in ["", *(f"{suite}/" for suite in OTHER_SUITES)])
