"""One lab node: an overlay root over the base rootfs, booted by systemd-nspawn in its namespace.

The nspawn settings are the ones nested containers need (see the lab notes): its own cgroup in
every hierarchy, all capabilities, no user namespace, no seccomp filter, writable /proc/sys,
and /var/lib/containerd on a plain directory rather than the overlay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kubestrata.lab import network
from kubestrata.shell import run

CGROUP_ROOT = Path("/sys/fs/cgroup")
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1", "SYSTEMD_SECCOMP": "0"}
PLAIN_DIRS = ("/var/lib/containerd",)
# The kubelet watches the kernel log for OOM kills and will not start without /dev/kmsg, which
# nspawn does not give a container: the host's, read-only (kind links /dev/console instead).
KMSG = Path("/dev/kmsg")


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers and the v2 tree)."""
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mountpoint, fstype, *_ = line.split()
            if fstype in ("cgroup", "cgroup2") and mountpoint.startswith(str(CGROUP_ROOT)):
                found.append(Path(mountpoint))
    return found


def cgroup_path(lab: str, node: str = "") -> Path:
    return Path("kubestrata") / network.lab_namespace(lab) / node


def _enter_cgroups(relative: Path) -> None:
    """Runs in the child before exec: move it into its own cgroup in every hierarchy."""
    os.setsid()
    pid = str(os.getpid())
    for hierarchy in cgroup_hierarchies():
        target = hierarchy / relative
        target.mkdir(parents=True, exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():     # a new cpuset starts empty: inherit
            for part in _chain(relative):
                for name in ("cpuset.cpus", "cpuset.mems"):
                    own = hierarchy / part / name
                    if not own.read_text().strip():
                        own.write_text((hierarchy / part.parent / name).read_text())
        (target / "cgroup.procs").write_text(pid)


def _chain(relative: Path) -> list[Path]:
    """kubestrata/lab/node -> [kubestrata, kubestrata/lab, kubestrata/lab/node]."""
    return list(relative.parents)[::-1][1:] + [relative]


def remove_cgroups(relative: Path) -> None:
    """Remove a cgroup subtree, deepest first (each must be empty of processes)."""
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / relative
        if not top.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(directory)
            except OSError:
                pass
        for parent in top.parents:
            if parent == hierarchy:
                break
            try:
                parent.rmdir()          # only succeeds once no other lab uses it
            except OSError:
                break


def cgroup_pids(relative: Path) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies()[:1]:
        for directory, _, files in os.walk(hierarchy / relative):
            if "cgroup.procs" in files:
                pids.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
    return pids


def rss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def nspawn_pids(lab: str) -> dict[str, int]:
    """Running systemd-nspawn processes of a lab, by node name (found from /proc, no state)."""
    marker = f"--network-namespace-path={network.NETNS_DIR}/{network.node_namespace(lab, '')}"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn"):
            continue
        for arg in argv:
            text = arg.decode(errors="replace")
            if text.startswith(marker):
                found[text[len(marker):]] = int(entry.name)
    return found


class Machine:
    def __init__(self, lab: str, lab_dir: Path, node: str):
        self.lab = lab
        self.node = node
        self.dir = lab_dir / "nodes" / node
        self.root = self.dir / "root"
        self.console_log = self.dir / "console.log"
        self.namespace = network.node_namespace(lab, node)

    def mounted(self) -> bool:
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == str(self.root) for line in mounts)

    def mount(self, lower: Path) -> bool:
        if self.mounted():
            return False
        for sub in ("upper", "work", "root", *(f"plain{d.replace('/', '-')}" for d in PLAIN_DIRS)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
             str(self.root)])
        return True

    def configure(self, hostname: str, authorized_key: str, apt_source: str) -> str:
        """Write the node's identity and access; returns its SSH host public key."""
        etc = self.root / "etc"
        (etc / "hostname").write_text(hostname + "\n")
        hosts = etc / "hosts"
        if hostname not in hosts.read_text():
            hosts.write_text(f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
        if not (etc / "machine-id").read_text().strip():
            machine_id = run(["systemd-id128", "new"]).stdout
            (etc / "machine-id").write_text(machine_id)
        host_key = etc / "ssh" / "ssh_host_ed25519_key"
        if not host_key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{hostname}",
                 "-f", str(host_key)])
        ssh_dir = self.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(authorized_key)
        (ssh_dir / "authorized_keys").chmod(0o600)
        (etc / "apt" / "sources.list.d" / "kubestrata-lab-mirror.list").write_text(apt_source)
        return " ".join(host_key.with_suffix(".pub").read_text().split()[:2])

    def boot(self) -> int:
        argv = ["systemd-nspawn", "-D", str(self.root), "-M", self.node, "--boot",
                "--register=no", "--keep-unit",
                f"--network-namespace-path={network.NETNS_DIR / self.namespace}",
                "--resolv-conf=off", "--timezone=off", "--link-journal=no",
                "--console=read-only", "--capability=all", "--private-users=no"]
        argv += [f"--bind={self.dir}/plain{d.replace('/', '-')}:{d}" for d in PLAIN_DIRS]
        if KMSG.exists():
            argv.append(f"--bind-ro={KMSG}")
        relative = cgroup_path(self.lab, self.node)
        with open(self.console_log, "ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **NSPAWN_ENV}, preexec_fn=lambda: _enter_cgroups(relative))
        return process.pid

    def unmount(self) -> None:
        if self.mounted():
            if run(["umount", str(self.root)], check=False).returncode != 0:
                run(["umount", "--lazy", str(self.root)])


def stop(pids: list[int], timeout: float = 20.0) -> None:
    """SIGTERM (a clean poweroff for nspawn), then SIGKILL whatever is left after timeout."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    for pid in pids:
        while _alive(pid):
            time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
