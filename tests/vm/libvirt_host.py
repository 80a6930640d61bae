"""A private libvirt host for tests: libvirtd and virtlogd in a network namespace of their own.

Everything libvirt makes stays there or in one work directory:

- a network namespace (``ip netns add``): the NAT network's bridge, its dnsmasq, its iptables
  rules, the VMs' taps and addresses exist only in it; nothing routes out of it;
- a private mount namespace inside it, in which /etc/libvirt, /var/lib/libvirt,
  /var/log/libvirt and /var/cache/libvirt are bind mounts of scratch directories under the work
  directory, /run is an empty tmpfs holding only /run/libvirt (again the work directory's), and
  /dev/kvm is hidden (this machine's KVM hangs ordinary guests: domains are of type ``qemu``).
  The host's own libvirt configuration and state are never read or written, and the mounts
  vanish with the namespace when the daemons end.

The host reaches the daemon through its socket in the work directory (:attr:`LibvirtHost.uri`),
and a VM's SSH port through ``ip netns exec NAMESPACE`` (:meth:`LibvirtHost.proxy_command`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubestrata.shell import run

# Scratch directories, bind-mounted over the host's paths of the same name in the daemons'
# mount namespace (the work directory holds them as etc/libvirt, var/lib/libvirt, ...).
PRIVATE_DIRS = ("etc/libvirt", "var/lib/libvirt", "var/log/libvirt", "var/cache/libvirt")
PACKAGE_DIRS = ("var/log/libvirt/qemu", "var/lib/libvirt/images", "var/lib/libvirt/qemu")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

LIBVIRTD_CONF = """\
# The private test daemon: the socket is root's only (the work directory is 0700 anyway).
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
QEMU_CONF = """\
# No AppArmor/SELinux labelling (this kernel has no LSM; the host's profiles stay out of it),
# qemu runs as root, and no cgroups: `ip netns exec` mounts a fresh /sys without them.
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
vnc_listen = "127.0.0.1"
"""
VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'

# Runs as `ip netns exec NS unshare --mount --propagation private sh -c SCRIPT WORKDIR`.
# virtlogd runs in the background; libvirtd replaces the shell, so the Popen's pid is its own.
DAEMONS_SCRIPT = r"""
set -eu
w=$1
for d in etc/libvirt var/lib/libvirt var/log/libvirt var/cache/libvirt; do
  mount --bind "$w/$d" "/$d"
done
mount -t tmpfs -o mode=0755 kubestrata-run /run
mkdir /run/libvirt
mount --bind "$w/run/libvirt" /run/libvirt
if [ -e /dev/kvm ]; then mount --bind /dev/null /dev/kvm; fi
ip link set lo up
virtlogd --config /etc/libvirt/virtlogd.conf &
echo $! > "$w/virtlogd.pid"
exec libvirtd --config /etc/libvirt/libvirtd.conf
"""


class LibvirtHostError(Exception):
    pass


def missing_commands() -> list[str]:
    return [c for c in ("libvirtd", "virtlogd", "virsh", "ip", "unshare", "dnsmasq", "iptables")
            if shutil.which(c) is None]


class LibvirtHost:
    """libvirtd + virtlogd in network namespace ``namespace``, state under ``workdir``."""

    def __init__(self, workdir: Path, namespace: str | None = None):
        self.workdir = workdir
        self.namespace = namespace or f"ksvirt-{secrets.token_hex(3)}"
        self.daemon: subprocess.Popen | None = None
        self.virtlogd_pid: int | None = None
        self.timings: dict[str, float] = {}

    # -- how the host reaches it --------------------------------------------------------------
    @property
    def socket(self) -> Path:
        """libvirtd's read-write socket (virtqemud would call it virtqemud-sock)."""
        return self.workdir / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def virsh(self, *args: str, check: bool = True, timeout: float = 120,
              input: str | None = None) -> subprocess.CompletedProcess:
        return run(["virsh", "-q", "-c", self.uri, *args], check=check, timeout=timeout,
                   input=input)

    def netns_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def proxy_command(self) -> str:
        """An ssh ProxyCommand reaching %h:%p from inside the namespace (as lab nodes do)."""
        return f"ip netns exec {self.namespace} {sys.executable} -m kubestrata.lab.proxy %h %p"

    def log(self, name: str = "libvirtd.log") -> Path:
        return self.workdir / "var" / "log" / "libvirt" / name

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        missing = missing_commands()
        if missing:
            raise LibvirtHostError(f"missing {', '.join(missing)}: apt-get install "
                                   "libvirt-daemon-system dnsmasq-base iptables")
        for path in PRIVATE_DIRS:
            if not Path("/", path).is_dir():
                raise LibvirtHostError(f"/{path} is missing (libvirt-daemon-system installs "
                                       "it): the private daemon mounts its own over it")
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        # The directories libvirt-daemon-system ships (libvirtd does not make them itself).
        for path in (*PRIVATE_DIRS, *PACKAGE_DIRS, "run/libvirt"):
            (self.workdir / path).mkdir(parents=True, exist_ok=True)
        etc = self.workdir / "etc" / "libvirt"
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (etc / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        run(["ip", "netns", "add", self.namespace], timeout=30)
        with (self.workdir / "daemons.log").open("w") as out:
            self.daemon = subprocess.Popen(
                self.netns_argv("unshare", "--mount", "--propagation", "private",
                                "sh", "-c", DAEMONS_SCRIPT, "sh", str(self.workdir)),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise LibvirtHostError(f"libvirtd exited ({self.daemon.returncode}): "
                                       + self._tail(self.workdir / "daemons.log")
                                       + self._tail(self.log()))
            if self.socket.exists() and self.virsh("version", check=False,
                                                   timeout=30).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise LibvirtHostError(f"libvirtd did not answer on {self.socket} within "
                                   f"{START_TIMEOUT:.0f} s: " + self._tail(self.log()))
        pid_file = self.workdir / "virtlogd.pid"
        self.virtlogd_pid = int(pid_file.read_text()) if pid_file.exists() else None
        self.timings["daemon start"] = time.monotonic() - started

    def stop(self) -> list[str]:
        """Destroy and undefine every domain, network and pool, stop the daemons, delete the
        namespace and the work directory. Returns what was left behind (empty when clean)."""
        started = time.monotonic()
        if self.daemon is not None and self.daemon.poll() is None:
            self._remove_all_objects()
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.virtlogd_pid is not None:       # libvirtd's child until libvirtd ends
            _terminate(self.virtlogd_pid)
        leftovers = []
        pids = run(["ip", "netns", "pids", self.namespace], check=False, timeout=30)
        if pids.returncode == 0 and pids.stdout.split():
            leftovers.append(f"processes left in {self.namespace}: "
                             + ", ".join(_describe(pid) for pid in pids.stdout.split()))
            for pid in pids.stdout.split():
                _terminate(int(pid), kill=True)
        run(["ip", "netns", "delete", self.namespace], check=False, timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)
        leftovers += self.leftovers()
        self.timings["teardown"] = time.monotonic() - started
        return leftovers

    def leftovers(self) -> list[str]:
        """Anything of this host still visible from the host: namespace, mounts, bridges,
        processes naming the work directory, the work directory itself."""
        found = []
        if self.namespace in run(["ip", "netns", "list"], timeout=30).stdout.split():
            found.append(f"network namespace {self.namespace}")
        mounts = Path("/proc/self/mountinfo").read_text()
        if str(self.workdir) in mounts or "kubestrata-run" in mounts:
            found.append(f"a mount of {self.workdir} in the host's mount namespace")
        links = run(["ip", "-o", "link", "show", "type", "bridge"], timeout=30).stdout
        found += [f"bridge {line.split(':')[1].strip()} in the host's namespace"
                  for line in links.splitlines() if "kubestrata" in line or "virbr" in line]
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if str(self.workdir) in cmdline and int(proc.name) != os.getpid():
                    found.append(f"process {proc.name}: {cmdline[:120]}")
        if self.workdir.exists():
            found.append(f"work directory {self.workdir}")
        return found

    def _remove_all_objects(self) -> None:
        for name in self.virsh("list", "--all", "--name", check=False).stdout.split():
            self.virsh("destroy", name, check=False)
            self.virsh("undefine", name, "--nvram", check=False)
        for name in self.virsh("net-list", "--all", "--name", check=False).stdout.split():
            self.virsh("net-destroy", name, check=False)
            self.virsh("net-undefine", name, check=False)
        for name in self.virsh("pool-list", "--all", "--name", check=False).stdout.split():
            self.virsh("pool-destroy", name, check=False)
            self.virsh("pool-undefine", name, check=False)

    @staticmethod
    def _tail(path: Path, lines: int = 20) -> str:
        if not path.exists():
            return ""
        return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _terminate(pid: int, kill: bool = False) -> None:
    try:
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return
    if kill:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _describe(pid: str) -> str:
    try:
        return f"{pid} ({Path('/proc', pid, 'comm').read_text().strip()})"
    except OSError:
        return pid
