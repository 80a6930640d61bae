"""`kubestrata up all-in-one --provider libvirt`'s machines and `kubestrata down`, for real
(issue 14 §3): infra/'s program run inline by the Pulumi CLI built here, with the libvirt
plugin built here, against the private libvirtd (tests/vm/libvirt_host.py).

The user's side is a project directory in tmp_path: the checkout's Pulumi.yaml as it is (backend
file://., so the state lands in that directory) and Pulumi.all-in-one.yaml, the checkout's with
the keys a user sets (libvirtUri, domainType qemu, the cached test image, sshPublicKey,
sshProxyCommand, and memory through kubestrata:overrides); PULUMI_HOME, HOME, temporary files,
kubestrata's state, runs and inventories are in tmp_path too, and the admin key is in an
ssh-agent of the test's own (as a user's key would be). Then, as `kubestrata up` does, its
machines phase (LibvirtProvider.create: pulumi up, then wait for SSH and cloud-init from the
inventory the program wrote), what cloud-init applied, a second up that changes nothing, the
console command, the modes on the hypervisor; then a new admin key, which a preview shows
replacing the live domain (the old one first), and the domain deleted by hand: the next up
finds it gone (refresh), makes it again with the new seed and cloud-init installs the new key;
and `kubestrata down --provider libvirt --yes`, after which the daemon has no domain, volume,
pool or network.

The layers do not run here: the test image has none of prepare's packages (curl, chrony,
conntrack, ...) and the VMs have no route to a mirror.
"""

from __future__ import annotations

import shutil
import signal
import stat
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from pulumi import automation

from kubestrata import orchestrate, paths, providers, pulumi_cli, remote, topology, vms
from kubestrata.cli import main
from kubestrata.shell import run
from tests.harness import needs_root
from tests.pulumi import world

pytestmark = [pytest.mark.lab, needs_root]

STACK = "all-in-one"
NODE = "node-1"
MEMORY_MIB = 2048       # all-in-one's node is a control plane: kubeadm's minimum is 1700 MiB


@pytest.fixture
def ssh_agent(tmp_path, monkeypatch):
    """An ssh-agent holding a fresh admin key; returns its public key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test",
                    "-f", str(tmp_path / "admin")], check=True)
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(["ssh-add", "-q", str(tmp_path / "admin")], check=True,
                       capture_output=True)
        yield (tmp_path / "admin.pub").read_text().strip()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)


@pytest.fixture
def user_project(tmp_path, monkeypatch, libvirt_host, debian_image, ssh_agent) -> Path:
    """The project directory a user would run kubestrata in, with everything else in tmp."""
    missing = [c for c in ("go", "xsltproc", "mkisofs", "ssh") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    return world.user_project(tmp_path, monkeypatch, STACK, {
        "kubestrata:libvirtUri": libvirt_host.uri,
        "kubestrata:domainType": "qemu",
        "kubestrata:image": str(debian_image.disk),
        "kubestrata:sshPublicKey": ssh_agent,
        "kubestrata:sshProxyCommand": libvirt_host.proxy_command(),
        "kubestrata:overrides": {"node_groups": {"node": {"memory_mib": MEMORY_MIB,
                                                          "cpus": 2}}},
    }, "pulumi up test")


def stack_of(project: Path) -> automation.Stack:
    """The stack as kubestrata's provider opens it."""
    return automation.select_stack(
        stack_name=STACK, project_name=providers.PULUMI_PROJECT_NAME,
        program=providers.infra_program(), opts=automation.LocalWorkspaceOptions(
            work_dir=str(project), pulumi_command=pulumi_cli.command(),
            env_vars=pulumi_cli.libvirt_plugin_env()))


def last_update(project: Path) -> dict:
    """The resource changes of the stack's last update, from its history."""
    [entry] = stack_of(project).history(page_size=1)
    return entry.resource_changes


def preview_steps(project: Path) -> dict[str, list[str]]:
    """The steps a preview plans, in order, by resource name, for those that change."""
    steps: dict[str, list[str]] = {}

    def on_event(event) -> None:
        if event.resource_pre_event is not None:
            metadata = event.resource_pre_event.metadata
            if metadata.op != automation.events.OpType.SAME:
                steps.setdefault(metadata.urn.split("::")[-1], []).append(metadata.op.value)
    stack_of(project).preview(on_event=on_event, color="never")
    return steps


def seed_digest(host, topo, node) -> str:
    """The content hash in the name of the node's seed volume on the hypervisor."""
    [seed] = [v for v in host.virsh("vol-list", vms.pool_name(topo)).stdout.split()
              if v.startswith(f"{node.name}-seed-")]
    return seed.removeprefix(f"{node.name}-seed-").removesuffix(".iso")


def test_kubestrata_up_makes_the_vm_with_pulumi_and_down_removes_it(libvirt_host, debian_image,
                                                                    user_project, capsys,
                                                                    tmp_path):
    host, timings = libvirt_host, {}
    topo = topology.load(STACK, {"node_groups": {"node": {"memory_mib": MEMORY_MIB}}})
    node = topo.node(NODE)
    domain = vms.domain_name(topo, node)
    provider = providers.provider_for("libvirt", topology.load(STACK))
    machines = orchestrate.machines_phase(provider, out=print)    # `kubestrata up`'s first phase
    pulumi_cli.libvirt_plugin_env()                               # built before timing
    pulumi_cli.built_root()
    try:
        started = time.monotonic()
        assert machines.action() == "1 changes"           # one kind of change: create
        timings["up, boot and cloud-init"] = time.monotonic() - started
        changes = last_update(user_project)
        assert set(changes) == {"create"}, changes
        created = changes["create"]

        # The program's files: inventory and known_hosts; the state in the project's backend.
        inventory = provider.inventory_path()
        assert inventory == paths.INVENTORY_DIR / "libvirt" / STACK / "hosts.yml"
        hosts = remote.hostvars(inventory)
        assert hosts[NODE]["ansible_host"] == str(node.address)
        assert (user_project / ".pulumi" / "stacks" / "kubestrata" / f"{STACK}.json").exists()
        assert "encryptionsalt" in (user_project / f"Pulumi.{STACK}.yaml").read_text()
        state = (user_project / ".pulumi" / "stacks" / "kubestrata" / f"{STACK}.json").read_text()
        assert "BEGIN OPENSSH PRIVATE KEY" not in state, "the seed's host key is a secret"

        def on_node(command: str, host_vars: dict = hosts[NODE]) -> str:
            result = remote.run(host_vars, command, timeout=120)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            return result.stdout.strip()

        # SSH answers with the host key the program pinned, and only with it.
        args = hosts[NODE]["ansible_ssh_common_args"]
        assert f"UserKnownHostsFile={vms.known_hosts_path(topo)}" in args
        assert "StrictHostKeyChecking=yes" in args
        other = user_project.parent / "other_known_hosts"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(user_project.parent / "other")], check=True)
        other.write_text(f"{node.address} "
                         + (user_project.parent / "other.pub").read_text())
        stranger = remote.run({**hosts[NODE], "ansible_ssh_common_args": args.replace(
            str(vms.known_hosts_path(topo)), str(other))}, "true")
        assert stranger.returncode == 255 and "Host key verification failed" in stranger.stderr

        # What cloud-init applied.
        assert "status: done" in on_node("cloud-init status")
        assert on_node("hostname --fqdn") == f"{NODE}.{topo.domain}"
        assert f"inet {node.address}/{topo.network.prefixlen} " in \
            on_node("ip -4 -o addr show dev eth0")
        assert on_node("ip route show default").startswith(f"default via {topo.gateway} ")
        assert on_node(f"getent hosts {NODE}.{topo.domain}").split()[0] == str(node.address)
        root_size = int(on_node("df --block-size=1 --output=size / | tail -1"))
        assert root_size > 0.9 * node.disk_gib * 1024 ** 3, "growpart did not grow the root"
        assert on_node("findmnt -no SOURCE /") == "/dev/vda1"
        assert int(on_node("grep MemTotal /proc/meminfo").split()[1]) > 0.8 * MEMORY_MIB * 1024
        assert on_node("nproc") == "2"
        assert on_node("sudo -n passwd -S kubestrata").split()[1] == "L"
        assert "passwordauthentication no" in on_node("sudo -n sshd -T").splitlines()

        # What libvirt holds: the domain as the program defined it, network, pool, volumes.
        live = ElementTree.fromstring(host.virsh("dumpxml", domain).stdout)
        assert live.get("type") == "qemu"
        assert live.find("devices/graphics").get("type") == "vnc"
        assert live.find("devices/graphics/listen").get("address") == "127.0.0.1"
        assert host.virsh("vncdisplay", domain).stdout.strip().startswith("127.0.0.1:")
        console_log = host.workdir / vms.console_log(topo, node).lstrip("/")
        assert "Debian GNU/Linux 13" in console_log.read_text(errors="replace"), \
            "the serial console is not logged"
        network = ElementTree.fromstring(host.virsh("net-dumpxml",
                                                    vms.network_name(topo)).stdout)
        assert network.find("forward").get("mode") == "nat"
        assert network.find("ip/dhcp") is None
        volumes = host.virsh("vol-list", vms.pool_name(topo)).stdout
        assert vms.image_volume_name(str(debian_image.disk)) in volumes.split()
        assert f"{NODE}.qcow2" in volumes.split() and "disk.qcow2" not in volumes.split()
        # Nobody else on the hypervisor reads the volumes (the seed holds the private host key).
        pool_dir = host.workdir / vms.pool_path(topo, vms.Settings("")).lstrip("/")
        assert stat.S_IMODE(pool_dir.stat().st_mode) == 0o711
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in pool_dir.iterdir()}
        assert set(modes.values()) == {0o600} and len(modes) == 3, modes
        # The guest took the seed's content hash as its instance-id.
        digest = seed_digest(host, topo, node)
        assert on_node("cat /var/lib/cloud/data/instance-id") == f"{domain}-{digest}"
        # `kubestrata console`'s command reaches the domain on its hypervisor.
        console = provider.console_argv(NODE)
        assert console == ["virsh", "-c", host.uri, "console", domain]
        assert run([*console[:3], "domstate", domain]).stdout.strip() == "running"

        # A second up changes nothing.
        started = time.monotonic()
        assert machines.action() == "nothing changed"
        timings["second up"] = time.monotonic() - started
        assert last_update(user_project) == {"same": created}

        # A new admin key: a new seed, so a new domain, the old one deleted first.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin2@test",
                        "-f", str(tmp_path / "admin2")], check=True)
        subprocess.run(["ssh-add", "-q", str(tmp_path / "admin2")], check=True,
                       capture_output=True)
        new_key = (tmp_path / "admin2.pub").read_text().strip()
        stack_of(user_project).set_config("kubestrata:sshPublicKey",
                                          automation.ConfigValue(new_key))
        started = time.monotonic()
        steps = preview_steps(user_project)
        timings["preview"] = time.monotonic() - started
        assert set(steps) == {f"{NODE}-seed", f"{NODE}-domain"}, steps
        domain_steps = steps[f"{NODE}-domain"]
        assert domain_steps.index("delete-replaced") < domain_steps.index("create-replacement")
        # The domain deleted by hand: up sees it gone and makes it, with the new seed.
        host.virsh("destroy", domain)
        host.virsh("undefine", domain)
        started = time.monotonic()
        assert machines.action() != "nothing changed"
        timings["up after a hand-deleted domain, boot"] = time.monotonic() - started
        assert host.virsh("domstate", domain).stdout.strip() == "running"
        assert seed_digest(host, topo, node) != digest, "the old seed stays"
        assert on_node("cat /var/lib/cloud/data/instance-id") == \
            f"{domain}-{seed_digest(host, topo, node)}"
        assert new_key in on_node("cat .ssh/authorized_keys").splitlines()
    finally:
        capsys.readouterr()
        started = time.monotonic()
        assert main(["down", STACK, "--provider", "libvirt", "--yes"]) == 0
        timings["down"] = time.monotonic() - started
        down = capsys.readouterr().out
        with capsys.disabled():
            print("\nkubestrata up/down --provider libvirt: "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert "Destroying (all-in-one)" in down and f"{STACK}: down" in down, down
    assert host.virsh("list", "--all", "--name").stdout.split() == []
    assert host.virsh("net-list", "--all", "--name").stdout.split() == []
    assert host.virsh("pool-list", "--all", "--name").stdout.split() == []
    assert not (host.workdir / vms.pool_path(topo, vms.Settings("")).lstrip("/")).exists()
