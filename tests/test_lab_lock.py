"""One command at a time changes a lab: a second one is refused at once, naming the first, and
changes nothing."""

import os
import subprocess
import sys

import pytest

from kubestrata import cli, paths, topology
from kubestrata.lab import lab
from kubestrata.lab.lab import Lab
from kubestrata.locks import Busy
from kubestrata.providers import LabProvider, provider_for

HOLD = """
import sys
from kubestrata.lab import lab
with lab.exclusive("all-in-one", "kubestrata up all-in-one"):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def state(monkeypatch, tmp_path):
    """The labs' state under tmp_path, here and in the processes the test starts."""
    monkeypatch.setenv("KUBESTRATA_STATE", str(tmp_path))
    monkeypatch.setattr(lab, "STATE_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def changes(state, monkeypatch):
    """Every command that would change a lab records it instead."""
    done = []
    monkeypatch.setattr(cli, "remove_lab", lambda name: done.append(f"remove {name}") or [])
    monkeypatch.setattr(Lab, "up", lambda self, log: done.append("lab up") or [])
    monkeypatch.setattr(LabProvider, "destroy", lambda self: done.append("destroy") or [])
    monkeypatch.setattr(cli, "_run_phases", lambda *args: done.append("phases") or 0)
    return done


@pytest.fixture
def held_by_another_process(state):
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=paths.PROJECT_ROOT)
    assert holder.stdout.readline() == "held\n"
    yield holder
    holder.stdin.close()
    holder.wait(timeout=30)


COMMANDS = [["lab", "up", "all-in-one"], ["lab", "down", "all-in-one"], ["up", "all-in-one"],
            ["upgrade", "all-in-one"], ["down", "all-in-one", "--yes"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_busy_lab_is_refused_naming_who_holds_it(command, state, changes,
                                                   held_by_another_process, capsys):
    (state / "lab" / "all-in-one").mkdir(parents=True)
    assert cli.main(command) == 1
    assert capsys.readouterr().err == (
        f"kubestrata: lab all-in-one is busy: `kubestrata up all-in-one` (pid "
        f"{held_by_another_process.pid}) holds it; wait for it or stop it\n")
    assert changes == []
    assert (state / "lab" / "all-in-one").is_dir()


def test_the_lock_is_free_again_once_its_holder_ends(changes, held_by_another_process):
    held_by_another_process.stdin.close()
    held_by_another_process.wait(timeout=30)
    assert cli.main(["lab", "down", "all-in-one"]) == 0
    assert cli.main(["lab", "down", "all-in-one"]) == 0
    assert changes == ["remove all-in-one", "remove all-in-one"]


def test_the_lock_lives_outside_the_lab_folder_that_down_deletes(state):
    assert not lab.lock_path("all-in-one").is_relative_to(lab.lab_dir("all-in-one"))


@pytest.mark.parametrize("name", ["..", ".locks", "../../etc"])
def test_lab_down_by_name_takes_only_a_lab_name(name, state, changes, capsys):
    (state / "lab" / ".locks").mkdir(parents=True)
    assert cli.main(["lab", "down", name]) == 2
    assert changes == [] and capsys.readouterr().err.startswith("error: topology: ")


def test_a_libvirt_stack_is_held_likewise(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path)
    provider = provider_for("libvirt", topology.load("all-in-one"))
    with provider.exclusive("kubestrata up all-in-one --provider libvirt"):
        with pytest.raises(Busy, match=rf"^libvirt stack all-in-one is busy: `kubestrata up "
                                       rf"all-in-one --provider libvirt` \(pid {os.getpid()}\)"):
            with provider.exclusive("kubestrata down all-in-one --provider libvirt"):
                pass
    assert (tmp_path / "libvirt" / ".locks" / "all-in-one.lock").exists()
