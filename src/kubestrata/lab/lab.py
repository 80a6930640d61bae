"""A lab: the topology's nodes as systemd-nspawn machines on a private bridge, with a package
mirror and an inventory. ``up`` converges (a re-run changes nothing; an interrupted run is
completed), ``down`` removes every node, mount, namespace and process of the lab, keeping caches.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubestrata import gobuild, inventory, locks, sourcebundle
from kubestrata.cachedir import sha256
from kubestrata.lab import machine, mirror, network, rootfs, timeserver
from kubestrata.paths import INVENTORY_DIR, PROJECT_ROOT, STATE_DIR
from kubestrata.shell import CommandError, require, run
from kubestrata.topology import Topology

REQUIRED_COMMANDS = {
    "systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2",
    "ssh": "openssh-client", "ssh-keygen": "openssh-client", "dpkg-scanpackages": "dpkg-dev",
    "systemd-id128": "systemd",
}
CONTROL_PATH_ROOT = Path("/run/kubestrata/cp")
# Each node's systemd takes several inotify instances; the kernel default of 128 per user
# stops new nodes from booting once about 20 nodes run on the host.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_MINIMUM = 1024
SSH_TIMEOUT = 180.0     # a loaded 2-core host can take a minute to boot eight nodes
BUNDLE_PORT = 3143      # the Kubernetes bundle, served beside the package mirror


class LabError(Exception):
    pass


@dataclass
class NodeStatus:
    name: str
    roles: str
    address: str
    running: bool
    ssh: bool
    rss_mib: float


class Lab:
    def __init__(self, topology: Topology):
        self.topology = topology
        self.name = topology.name
        self.dir = lab_dir(self.name)
        self.namespace = network.lab_namespace(self.name)
        self.key = self.dir / "ssh" / "id_ed25519"
        self.known_hosts = self.dir / "ssh" / "known_hosts"
        self.inventory_path = inventory_path(self.name)
        self.control_path_dir = control_path_dir(self.name)
        self.machines = {n.name: machine.Machine(self.name, self.dir, n.name)
                         for n in topology.nodes}

    # ---- bring up -------------------------------------------------------------------------

    def up(self, log=print, retire: frozenset[str] = frozenset(),
           renew: frozenset[str] = frozenset()) -> list[str]:
        """Converge the lab to the topology; returns what changed (empty: nothing). Nodes the
        topology no longer has are removed if they are in retire, and refused otherwise. The
        nodes in renew are removed first and made anew (new files, new SSH host key)."""
        preflight()
        changes: list[str] = []
        for name in [*self._retired_nodes(retire), *sorted(renew)]:
            changes += [f"{name}: {what}" for what in self._remove_node(name)]
        base = rootfs.ensure(log)
        packages = mirror.ensure(base, log)
        self.bundle = self._bundle(log)
        prefix = self.topology.network.prefixlen
        gateway = str(self.topology.gateway)
        if network.ensure_lab(self.name, gateway, prefix):
            changes.append(f"created network namespace {self.namespace}")
        if self._ensure_served("mirror", packages, mirror.PORT):
            changes.append(f"serving the package mirror on {gateway}:{mirror.PORT}")
        # Every cached bundle at a URL of its own (its directory's name): apt keeps one index per
        # URL, and would refuse a new bundle's index at the old URL when its Release is older.
        if self.bundle and self._ensure_served("bundle", self.bundle.parent, BUNDLE_PORT):
            changes.append(f"serving the Kubernetes bundles on {gateway}:{BUNDLE_PORT}")
        if self._ensure_running("time", ["kubestrata.lab.timeserver", gateway]):
            changes.append(f"serving the time on {gateway}:{timeserver.PORT} (NTP)")
        authorized_key = self._ensure_ssh_key()
        running = machine.nspawn_pids(self.name)
        host_keys = {}
        for node in self.topology.nodes:
            m = self.machines[node.name]
            pid = running.get(node.name)
            if network.ensure_node(self.name, node.name, str(node.address), prefix, gateway):
                changes.append(f"{node.name}: network namespace at {node.address}")
                if pid is not None:     # still running in a namespace that is gone: restart
                    machine.stop([pid])
                    pid = None
            if m.mount(base):
                changes.append(f"{node.name}: root filesystem mounted")
            host_keys[node.name] = m.configure(node.name, authorized_key,
                                               mirror.apt_sources(gateway))
            if pid is None:
                m.boot()
                changes.append(f"{node.name}: booted")
        self._write_known_hosts(host_keys)
        self.wait_for_ssh()
        if self._write_inventory():
            changes.append(f"inventory written to {self.inventory_path}")
        return changes

    def _bundle(self, log) -> Path | None:
        """The Kubernetes bundle for the topology's version, built here when there is a recipe
        for it; without one the lab serves none and the Kubernetes layer stops at its source."""
        version = self.topology.versions["kubernetes"]
        if version not in gobuild.recipe_versions("kubernetes"):
            log(f"no build recipe for Kubernetes {version} (gobuild/): the lab serves no bundle, "
                "so the Kubernetes layer will stop at its install source")
            return None
        return sourcebundle.ensure(version, log=log)

    def _retired_nodes(self, retire: frozenset[str]) -> list[str]:
        """The nodes the lab runs that the topology no longer has; refused unless in retire."""
        expected = {network.node_namespace(self.name, n.name) for n in self.topology.nodes}
        strays = sorted(ns.split(".", 1)[1] for ns in network.namespaces(self.name)
                        if ns != self.namespace and ns not in expected)
        refused = [name for name in strays if name not in retire]
        if refused:
            raise LabError(f"lab {self.name} runs nodes the topology no longer has "
                           f"({', '.join(refused)}); `kubestrata up` removes them after asking, "
                           f"or run `kubestrata lab down {self.name}` first, then up again")
        return strays

    def _remove_node(self, name: str) -> list[str]:
        """Stop one node and remove its processes, mounts, namespace and files."""
        pid = machine.nspawn_pids(self.name).get(name)
        removed = ["stopped"] if pid else []
        if pid:
            machine.stop([pid])
        node_dir = self.dir / "nodes" / name
        removed += _clear(machine.cgroup_path(self.name, name),
                          [network.node_namespace(self.name, name)], node_dir)
        if node_dir.exists():
            shutil.rmtree(node_dir)
            removed.append(f"deleted {node_dir}")
        return removed

    def _ensure_running(self, name: str, module: list[str]) -> bool:
        """Run `python -m MODULE...` in the lab namespace (a server on the gateway); one that
        runs with other arguments is replaced."""
        pid_file, started = self.dir / f"{name}.pid", self.dir / f"{name}.argv"
        wanted = shlex.join(module)
        running = pid_file.exists() and int(pid_file.read_text()) in network.pids(self.namespace)
        if running and started.exists() and started.read_text() == wanted:
            return False
        if running:
            machine.stop([int(pid_file.read_text())], timeout=5)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, sys.executable, "-m", *module],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        pid_file.write_text(str(process.pid))
        started.write_text(wanted)
        return True

    def _ensure_served(self, name: str, directory: Path, port: int) -> bool:
        """Serve directory over HTTP on the gateway."""
        return self._ensure_running(name, ["http.server", str(port), "--bind",
                                           str(self.topology.gateway), "--directory",
                                           str(directory)])

    def _ensure_ssh_key(self) -> str:
        if not self.key.exists():
            self.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kubestrata-lab-{self.name}",
                 "-f", str(self.key)])
        return self.key.with_suffix(".pub").read_text()

    def _write_known_hosts(self, host_keys: dict[str, str]) -> None:
        lines = [f"{self.topology.node(name).address},{name} {key}\n"
                 for name, key in host_keys.items()]
        self.known_hosts.write_text("".join(lines))

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]

    def wait_for_ssh(self, timeout: float = SSH_TIMEOUT) -> None:
        """Until every node accepts the lab key over SSH; names the nodes that never did."""
        def wait(node) -> str | None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._ssh_ok(str(node.address)):
                    return None
                time.sleep(0.2)
            return node.name

        with ThreadPoolExecutor(max_workers=8) as pool:
            late = [name for name in pool.map(wait, self.topology.nodes) if name]
        if late:
            logs = ", ".join(str(self.machines[n].console_log) for n in late)
            raise LabError(f"no SSH login within {timeout:.0f} s on {', '.join(late)}; "
                           f"see the console log: {logs}")

    def _ssh_ok(self, address: str) -> bool:
        result = run(["ssh", *self.ssh_options(), f"root@{address}", "true"],
                     netns=self.namespace, check=False, timeout=30)
        return result.returncode == 0

    def _write_inventory(self) -> bool:
        # The proxy lets Ansible reach the nodes from the host namespace as well as the lab's.
        proxy = f"ip netns exec {self.namespace} {sys.executable} -m kubestrata.lab.proxy %h %p"
        options = [o for o in self.ssh_options() if o not in ("-i", str(self.key))]
        ssh_args = " ".join(options + ["-o", f"'ProxyCommand={proxy}'"])
        rendered = inventory.render(self.topology, common={
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": ssh_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_control_path_dir": str(self.control_path_dir),
            "kubestrata_provider": "lab",
            "prepare_ntp_servers": [str(self.topology.gateway)],
            **self._offline_source(),
        })
        text = inventory.dump(rendered)
        if self.inventory_path.exists() and self.inventory_path.read_text() == text:
            return False
        inventory.write(rendered, self.inventory_path)
        return True

    def _offline_source(self) -> dict:
        """The lab is an air-gapped site with a bundle built here from source."""
        if not self.bundle:
            return {}
        return {"kube_install_source": "offline",
                "kube_offline_url": f"http://{self.topology.gateway}:{BUNDLE_PORT}/{self.bundle.name}/",
                "kube_offline_signing_key": str(self.bundle / "signing-key.asc"),
                "kube_offline_bundle_sha256": sha256(self.bundle / "bundle.json")}

    # ---- inspect and use -----------------------------------------------------------------

    def exists(self) -> bool:
        return bool(network.namespaces(self.name) or machine.nspawn_pids(self.name)
                    or self.dir.exists())

    def status(self) -> list[NodeStatus]:
        running = machine.nspawn_pids(self.name)
        have_lab = network.exists(self.namespace)

        def one(node) -> NodeStatus:
            up = node.name in running
            pids = machine.cgroup_pids(machine.cgroup_path(self.name, node.name)) if up else set()
            return NodeStatus(node.name, ",".join(node.roles), str(node.address), up,
                              up and have_lab and self._ssh_ok(str(node.address)),
                              machine.rss_mib(pids))

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, self.topology.nodes))

    def exec(self, node: str, command: list[str]) -> int:
        return subprocess.call(self.exec_argv(node, command))

    def exec_argv(self, node: str, command: list[str]) -> list[str]:
        """ssh as root to node from the lab's namespace, running command."""
        address = str(self.topology.node(node).address)
        tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
        # One argument is a shell line (as with ssh); several are quoted to keep their words.
        remote = command[0] if len(command) == 1 else shlex.join(command)
        return ["ip", "netns", "exec", self.namespace, "ssh", *self.ssh_options(), *tty,
                f"root@{address}", "--", remote]

    def run(self, command: list[str]) -> int:
        """command inside the lab namespace, from the project root, with ANSIBLE_INVENTORY set
        and kubestrata's own environment (its Ansible, pytest) first on PATH."""
        if not self.inventory_path.exists():
            raise LabError(f"lab {self.name} has no inventory; run `kubestrata lab up {self.name}`")
        venv_bin = Path(sys.executable).parent
        env = {**os.environ, "ANSIBLE_INVENTORY": str(self.inventory_path),
               "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
        return subprocess.call(["ip", "netns", "exec", self.namespace, *command],
                               cwd=PROJECT_ROOT, env=env)

    # ---- tear down -------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove every node, mount, namespace and process of the lab; caches stay."""
        return remove(self.name)


def lab_dir(name: str) -> Path:
    return STATE_DIR / "lab" / name


def inventory_path(name: str) -> Path:
    return INVENTORY_DIR / "lab" / name / "hosts.yml"


def lock_path(name: str) -> Path:
    """Beside the labs' folders: `down` deletes the lab's own."""
    return lab_dir(name).parent / ".locks" / f"{name}.lock"


def exclusive(name: str, command: str):
    """Hold lab name for command, so that no other command brings it up or takes it down
    meanwhile; raises locks.Busy, naming the holder, when another command has it."""
    return locks.exclusive(lock_path(name), f"lab {name}", command)


def control_path_dir(name: str) -> Path:
    """Ansible's SSH connection sharing keys sockets by address: labs share addresses, so
    each lab gets its own socket directory (short: socket paths end at 108 bytes)."""
    return CONTROL_PATH_ROOT / network.lab_namespace(name)


def remove(name: str) -> list[str]:
    """Remove every node, mount, namespace and process of the lab called name; caches stay.
    Needs only the name: a lab whose topology file is gone can still be removed."""
    directory = lab_dir(name)
    removed = []
    nspawn = machine.nspawn_pids(name)
    if nspawn:
        machine.stop(list(nspawn.values()))
        removed.append(f"stopped {len(nspawn)} nodes")
    # The mirror server lives in the lab namespace.
    removed += _clear(machine.cgroup_path(name), network.namespaces(name), directory)
    for path in (directory, inventory_path(name).parent, control_path_dir(name)):
        if path.exists():
            shutil.rmtree(path)
            removed.append(f"deleted {path}")
    return removed


def _clear(cgroup: Path, namespaces: list[str], directory: Path) -> list[str]:
    """Stop what still runs in the cgroup or the namespaces (a node's init outlives a killed
    nspawn), unmount everything under directory, delete the namespaces and the cgroups."""
    removed = []
    leftover = sorted(machine.cgroup_pids(cgroup)
                      | {pid for ns in namespaces for pid in network.pids(ns)})
    if leftover:
        machine.stop(leftover, timeout=5)
        removed.append(f"stopped {len(leftover)} processes in the lab namespaces")
    for mountpoint in dict.fromkeys(_mounts_under(directory)):
        # A mount may be gone meanwhile (with its node's shutdown, or listed twice).
        if run(["umount", mountpoint], check=False).returncode != 0 \
                and mountpoint in _mounts_under(directory):
            run(["umount", "--lazy", mountpoint])
        removed.append(f"unmounted {mountpoint}")
    for ns in namespaces:
        network.delete(ns)
    if namespaces:
        removed.append(f"deleted {len(namespaces)} network namespaces")
    machine.remove_cgroups(cgroup)
    if _mounts_under(directory):
        raise LabError(f"mounts remain under {directory}; not deleting it")
    return removed


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("lab nodes need root (network namespaces, mounts, systemd-nspawn); "
                       "run with sudo")
    try:
        require(REQUIRED_COMMANDS)
    except CommandError as exc:
        raise LabError(str(exc)) from None
    if int(INOTIFY_INSTANCES.read_text()) < INOTIFY_MINIMUM:
        INOTIFY_INSTANCES.write_text(str(INOTIFY_MINIMUM))
