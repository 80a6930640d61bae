"""Reaching nodes as Ansible does, from an inventory's variables: the same user, key and SSH
options (known_hosts, a lab's ProxyCommand or a VM's ProxyJump included)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def hostvars(inventory: Path) -> dict[str, dict]:
    """Every host of an inventory with its merged variables, as Ansible resolves them."""
    tool = Path(sys.executable).with_name("ansible-inventory")
    listed = json.loads(subprocess.run([str(tool), "-i", str(inventory), "--list"],
                                       capture_output=True, text=True, check=True).stdout)
    return {name: {"inventory_hostname": name, **values}
            for name, values in listed["_meta"]["hostvars"].items()}


def ssh_argv(host: dict) -> list[str]:
    """`ssh ... user@address` for a host's variables (append the remote command)."""
    argv = ["ssh", "-o", "BatchMode=yes"]
    if host.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(host["ansible_ssh_private_key_file"])]
    if host.get("ansible_port"):
        argv += ["-p", str(host["ansible_port"])]
    argv += shlex.split(host.get("ansible_ssh_common_args") or "")
    user = host.get("ansible_user", "root")
    return argv + [f"{user}@{host.get('ansible_host', host['inventory_hostname'])}"]


def run(host: dict, command: str, timeout: float = 120,
        as_root: bool = False) -> subprocess.CompletedProcess:
    """command on the host; as_root: through sudo where Ansible escalates (ansible_become)."""
    if as_root and host.get("ansible_become"):
        command = f"sudo -n sh -c {shlex.quote(command)}"
    return subprocess.run([*ssh_argv(host), command], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def wait_until_ready(hosts: dict[str, dict], timeout: float, ready: str = "true") -> dict[str, str]:
    """Until each host accepts an SSH login and `ready` succeeds there. A connection that fails
    (ssh exits 255: no sshd yet, or one restarting) is tried again until the timeout; `ready`
    failing is final. Returns what went wrong, by host (empty when every host is ready)."""
    def wait(name: str) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = run(hosts[name], ready, timeout=max(15.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if result.returncode == 0:
                return None
            if result.returncode != 255:
                output = (result.stdout + result.stderr).strip() or "no output"
                return f"`{ready}` exited {result.returncode}: {output}"
            time.sleep(2)
        return f"no SSH login within {timeout:.0f} s"

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {name: why for name, why in zip(hosts, pool.map(wait, hosts)) if why}
