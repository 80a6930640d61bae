"""`kubestrata lab run NAME -- CMD` finds kubestrata's own tools (ansible-playbook, pytest)
first on PATH, even when the venv is not activated."""

import subprocess
import sys
from pathlib import Path

from kubestrata import topology
from kubestrata.lab.lab import Lab


def test_lab_run_puts_the_venv_first_on_path(tmp_path, monkeypatch):
    lab = Lab(topology.load("all-in-one"))
    lab.inventory_path = tmp_path / "hosts.yml"
    lab.inventory_path.write_text("all: {}\n")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    seen = {}
    monkeypatch.setattr(subprocess, "call", lambda argv, cwd, env: seen.update(argv=argv, env=env) or 0)

    assert lab.run(["ansible-playbook", "--version"]) == 0

    assert seen["env"]["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert seen["env"]["ANSIBLE_INVENTORY"] == str(lab.inventory_path)
    assert seen["argv"][-2:] == ["ansible-playbook", "--version"]
