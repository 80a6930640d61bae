"""The lab nodes' shared base root filesystem: Debian minbase with systemd and sshd, cached.

Every node mounts it read-only as the lower layer of an overlay. Nothing node-specific lives
here: no SSH host keys, an empty machine-id, no apt sources (nodes get the lab mirror).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from kubestrata.cachedir import locked
from kubestrata.lab.debian import SUITE, archive_url
from kubestrata.paths import CACHE_DIR
from kubestrata.shell import run

# kmod: trixie's systemd loads libkmod only when it is there; without it
# systemd-modules-load fails at boot and the node starts "degraded".
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
            "iproute2", "kmod")

# The host's cgroup v1 controllers appear read-only inside a node; runc needs them writable.
CGROUP_UNIT = """\
[Unit]
Description=Make the cgroup controllers writable for nested containers (kubestrata lab)
DefaultDependencies=no
Before=sysinit.target
ConditionPathIsMountPoint=/sys/fs/cgroup/memory

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done'

[Install]
WantedBy=sysinit.target
"""

SSHD_CONFIG = """\
# kubestrata lab: one host key per node (written before boot), root by key only.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
"""

# Bump when the customisation below changes, so caches rebuild.
LAYOUT = "4"


def key() -> str:
    text = "|".join([SUITE, archive_url(), LAYOUT, *PACKAGES, CGROUP_UNIT, SSHD_CONFIG])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def path() -> Path:
    return CACHE_DIR / "rootfs" / f"{SUITE}-{key()}"


def ensure(log=print) -> Path:
    """The cached base rootfs, built on first use (~45 s, ~310 MB)."""
    target = path()
    if (target / "etc" / "os-release").exists():
        return target
    with locked(target.parent):
        if (target / "etc" / "os-release").exists():      # another process built it meanwhile
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        log(f"building the lab base rootfs (Debian {SUITE}, once; about a minute) in {target}")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(building), archive_url()], timeout=900)
        _customise(building)
        building.rename(target)
    return target


def _customise(root: Path) -> None:
    for key_file in (root / "etc" / "ssh").glob("ssh_host_*"):
        key_file.unlink()
    (root / "etc" / "ssh" / "sshd_config.d" / "kubestrata-lab.conf").write_text(SSHD_CONFIG)
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc" / "apt" / "sources.list").write_text("")
    unit = root / "etc" / "systemd" / "system" / "kubestrata-lab-cgroups.service"
    unit.write_text(CGROUP_UNIT)
    wants = root / "etc" / "systemd" / "system" / "sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
