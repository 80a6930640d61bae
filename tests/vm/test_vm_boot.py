"""A real first boot: the NoCloud seed the program renders for all-in-one's node, under qemu.

The guest boots the cached Debian cloud-style image from its own bootloader (software
emulation, no KVM) with a throwaway overlay of the node's disk size and the seed as a second
disk. Its user-mode network is the topology's node network, restricted: the guest reaches
nothing, and the only way in is SSH forwarded from 127.0.0.1. SSH checks the host key against the known_hosts file the program
writes, then the test checks what cloud-init applied.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from kubestrata import cloudinit, hostkeys, paths, providers, topology, vms

BOOT_TIMEOUT = 420          # seconds until cloud-init is done; typically 60-120 s under TCG
NODE = "node-1"


@pytest.fixture
def workdir():
    directory = Path(tempfile.mkdtemp(prefix="kubestrata-vm-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def booted(debian_image, workdir, monkeypatch):
    """all-in-one's node booted with its seed; yields (topology, settings, ssh command, keys)."""
    missing = [c for c in ("qemu-system-x86_64", "cloud-localds", "ssh", "ssh-keygen")
               if shutil.which(c) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: "
                    "apt-get install qemu-system-x86 cloud-image-utils openssh-client")
    monkeypatch.setattr(paths, "STATE_DIR", workdir / "state")
    monkeypatch.setattr(paths, "INVENTORY_DIR", workdir / "inventories")
    topo = topology.load("all-in-one")
    node = topo.node(NODE)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test",
                    "-f", str(workdir / "admin")], check=True)
    settings = vms.Settings(ssh_public_key=(workdir / "admin.pub").read_text().strip())
    keys = hostkeys.ensure(vms.state_dir("all-in-one"), [n.name for n in topo.nodes])
    vms.write_access_files(topo, settings, keys)

    seed = cloudinit.render(topo, node, settings.admin_user, settings.ssh_public_key,
                            keys[node.name])
    for name, text in (("user-data", seed.user_data), ("meta-data", seed.meta_data),
                       ("network-config", seed.network_config)):
        (workdir / name).write_text(text)
    subprocess.run(["cloud-localds", "-N", str(workdir / "network-config"),
                    str(workdir / "seed.iso"), str(workdir / "user-data"),
                    str(workdir / "meta-data")], check=True, capture_output=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", debian_image.format,
                    "-b", str(debian_image.disk), str(workdir / "disk.qcow2"),
                    f"{node.disk_gib}G"], check=True)

    port = _free_port()
    console = workdir / "console.log"
    netdev = (f"user,id=net0,net={topo.network},host={topo.gateway},"
              f"dhcpstart={topo.network[200]},restrict=on,"
              f"hostfwd=tcp:127.0.0.1:{port}-{node.address}:22")
    with (workdir / "qemu.log").open("w") as qemu_log:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
             "-display", "none", "-monitor", "none", "-serial", f"file:{console}", "-no-reboot",
             "-drive", f"file={workdir / 'disk.qcow2'},if=virtio,format=qcow2",
             "-drive", f"file={workdir / 'seed.iso'},if=virtio,format=raw,readonly=on",
             "-netdev", netdev,
             "-device", f"virtio-net-pci,netdev=net0,mac={vms.mac_address(topo, node)}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=qemu_log)
    try:
        ssh = _ssh_command(topo, settings, workdir, port)
        _wait_for_first_boot(ssh, qemu, workdir)
        yield topo, settings, ssh, keys
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=15)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


def _ssh_command(topo, settings, workdir: Path, port: int) -> list[str]:
    """The program's own ssh line for the node, pointed at the forwarded port."""
    line = shlex.split(vms.ssh_commands(topo, settings)[NODE])
    assert line[-1] == f"{settings.admin_user}@{topo.node(NODE).address}"
    return [*line[:-1], "-F", "/dev/null", "-p", str(port), "-i", str(workdir / "admin"),
            "-o", f"HostKeyAlias={topo.node(NODE).address}", "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"{settings.admin_user}@127.0.0.1"]


def _wait_for_first_boot(ssh: list[str], qemu: subprocess.Popen, workdir: Path) -> None:
    """As `kubestrata up` waits for a VM: an SSH login and cloud-init done (sshd restarts
    meanwhile, and a connection then fails with ssh's exit 255: tried again)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if qemu.poll() is not None:
            pytest.fail(f"qemu exited ({qemu.returncode}): {_tail(workdir / 'qemu.log')}\n"
                        f"console:\n{_tail(workdir / 'console.log')}")
        ready = subprocess.run([*ssh, providers.FIRST_BOOT_DONE], capture_output=True,
                               text=True, timeout=BOOT_TIMEOUT)
        if ready.returncode == 0:
            return
        assert ready.returncode == 255, f"cloud-init failed: {ready.stdout}{ready.stderr}"
        time.sleep(3)
    pytest.fail(f"not ready within {BOOT_TIMEOUT} s; console:\n"
                f"{_tail(workdir / 'console.log')}")


def _tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(empty)"
    return "\n".join(text.splitlines()[-lines:])


def test_first_boot_applies_hostname_key_and_static_address(booted):
    topo, settings, ssh, keys = booted
    node = topo.node(NODE)

    def remote(command: str) -> str:
        result = subprocess.run([*ssh, command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    assert "status: done" in remote("cloud-init status")
    assert remote("hostname") == NODE
    assert remote("hostname --fqdn") == f"{NODE}.{topo.domain}"
    assert settings.ssh_public_key in remote("cat ~/.ssh/authorized_keys")
    assert remote("sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == \
        keys[NODE].public.split()[:2]
    assert f"inet {node.address}/{topo.network.prefixlen} " in remote("ip -4 -o addr show dev eth0")
    assert remote("ip route show default").startswith(f"default via {topo.gateway} dev eth0")
    assert remote("sudo -n passwd --status " + settings.admin_user).split()[1] == "L"
    assert "passwordauthentication no" in remote("sudo -n sshd -T").splitlines()
    root_size = int(remote("df --block-size=1 --output=size / | tail -1"))
    assert root_size > 0.9 * node.disk_gib * 1024 ** 3, "the root filesystem did not grow"
