"""`kubestrata up/down --provider libvirt` run infra/'s program inline with the Pulumi CLI built
here (no Python language host), in the project directory, and a failure is one line.

The project directory is tmp_path/project: the checkout's Pulumi.yaml (backend file://.) and a
stack file; PULUMI_HOME, HOME, temporary files and kubestrata's state are in tmp_path. No
libvirtd is needed: the stack's topology is refused by the program before any resource exists
(tests/vm/test_pulumi_up.py brings a VM up).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubestrata import paths
from kubestrata.cli import main
from tests.pulumi import world
from tests.pulumi.test_engine import built_root  # noqa: F401 (fixture)

STACK = "all-in-one"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin@test"


def make_project(tmp_path: Path, monkeypatch, config: dict) -> Path:
    """A user's project directory in tmp_path with the stack file of config."""
    return world.user_project(tmp_path, monkeypatch, STACK, config, "kubestrata test")


@pytest.fixture
def plugin(built_root):  # noqa: F811
    if shutil.which("go") is None:
        pytest.skip("needs a Go toolchain to build the libvirt plugin")


def test_a_refused_topology_is_one_line_and_down_shows_progress(plugin, tmp_path, monkeypatch,
                                                                capsys):
    project = make_project(tmp_path, monkeypatch, {
        "kubestrata:sshPublicKey": KEY,
        "kubestrata:libvirtUri": "qemu:///system?socket=/nonexistent/kubestrata/libvirt-sock",
        # Only the stack file says so: the stack config reaches the program.
        "kubestrata:overrides": {"node_groups": {"node": {"memory_mib": 256}}},
    })
    assert main(["up", STACK, "--provider", "libvirt"]) == 1
    captured = capsys.readouterr()
    [output] = (tmp_path / "state" / "runs").glob("*-pulumi-up/output.log")
    [line] = captured.err.splitlines()
    assert line.startswith(f"kubestrata: pulumi up of libvirt stack {STACK} failed: ")
    assert "below the minimum" in line and "node_groups" in line, line
    assert line.endswith(f"(Pulumi's output: {output})")
    assert "Traceback" not in captured.out + captured.err
    assert "topology all-in-one cannot be used" in output.read_text()
    # The project's backend (file://. in the project directory) and its passphrase secrets.
    assert (project / ".pulumi" / "stacks" / "kubestrata" / f"{STACK}.json").exists()
    assert "encryptionsalt" in (project / f"Pulumi.{STACK}.yaml").read_text()
    assert not (paths.INVENTORY_DIR / "libvirt").exists()

    assert main(["down", STACK, "--provider", "libvirt", "--yes"]) == 0
    down = capsys.readouterr().out.splitlines()
    assert f"  Destroying ({STACK}):" in down, down       # Pulumi's progress, indented
    assert down[-1] == f"{STACK}: down"


def test_a_wrong_passphrase_is_one_line(plugin, tmp_path, monkeypatch, capsys):
    make_project(tmp_path, monkeypatch, {"kubestrata:sshPublicKey": KEY})
    assert main(["down", STACK, "--provider", "libvirt", "--yes"]) == 0      # the salt is set
    capsys.readouterr()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "another one")
    assert main(["down", STACK, "--provider", "libvirt", "--yes"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"kubestrata: pulumi destroy of libvirt stack {STACK} failed: ")
    assert "passphrase" in line and "(Pulumi's output: " in line, line
