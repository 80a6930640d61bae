"""Reaching a node as Ansible does, from its inventory variables: plain SSH with the same user,
key and options (the lab's ProxyCommand and known_hosts included), so the checks work against
any inventory. The CRI socket is forwarded over that SSH connection."""

from __future__ import annotations

import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

from kubestrata.remote import ssh_argv


CONNECTION_FAILED = 255     # ssh's own exit code
SETTLE_SECONDS = 60

Result = TypeVar("Result")


def exited_0(result) -> bool:
    """Whether a testinfra CommandResult or a CompletedProcess exited 0."""
    return (result.rc if hasattr(result, "rc") else result.returncode) == 0


def eventually(command: Callable[[], Result], within: float = SETTLE_SECONDS,
               succeeded: Callable[[Result], bool] = exited_0) -> Result:
    """command() again until its result succeeded or `within` seconds have passed; its last
    result. For requests to etcd or an API server: on a loaded machine one request can miss its
    deadline while the cluster stays ready, and a check is about the cluster being ready, not
    about one request."""
    deadline = time.monotonic() + within
    while True:
        result = command()
        if succeeded(result) or time.monotonic() > deadline:
            return result
        time.sleep(2)


def run(hostvars: dict, command: str, stdin: Path | None = None, timeout: float = 120,
        attempts: int = 2) -> subprocess.CompletedProcess:
    """Run a shell command on the node (stdin from a local file if given). A connection that
    fails or hangs is tried again (a check is about the node, not one SSH connection); what
    still fails then names the node, the command and the time it had."""
    result = None
    for _ in range(attempts):
        try:
            with open(stdin or "/dev/null", "rb") as source:
                result = subprocess.run([*shared_ssh_argv(hostvars), command], stdin=source,
                                        capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            result = None
            continue
        if result.returncode != CONNECTION_FAILED:
            break
    if result is None:
        raise TimeoutError(f"`{command}` on {hostvars['inventory_hostname']} did not end "
                           f"within {timeout:.0f} s, {attempts} times")
    return result


def shared_ssh_argv(hostvars: dict) -> list[str]:
    """ssh_argv, through the master connection of the inventory's socket directory (where
    `kubestrata verify` keeps testinfra's): one handshake per node, not one per command."""
    argv = ssh_argv(hostvars)
    directory = hostvars.get("ansible_control_path_dir")
    if not directory or not Path(directory).is_dir():
        return argv
    return [*argv[:-1], "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
            "-o", f"ControlPath={directory}/%C", argv[-1]]


@contextmanager
def forwarded_socket(hostvars: dict, remote_socket: str, timeout: float = 30):
    """A local unix socket that reaches remote_socket on the node through SSH."""
    with tempfile.TemporaryDirectory(prefix="kubestrata-cri-") as scratch:
        local = Path(scratch) / "cri.sock"
        tunnel = subprocess.Popen(
            [*ssh_argv(hostvars)[:-1], "-N", "-o", "ExitOnForwardFailure=yes",
             "-o", "StreamLocalBindUnlink=yes", "-L", f"{local}:{remote_socket}",
             ssh_argv(hostvars)[-1]],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + timeout
            while not local.exists():
                if tunnel.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no SSH forward of {remote_socket} from "
                                       f"{hostvars['inventory_hostname']}: "
                                       f"{tunnel.stderr.read().decode(errors='replace')}")
                time.sleep(0.05)
            yield str(local)
        finally:
            tunnel.terminate()
            try:
                tunnel.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tunnel.kill()
                tunnel.wait()
