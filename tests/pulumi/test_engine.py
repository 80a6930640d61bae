"""The Pulumi CLI built here from its Go module (gobuild recipe pulumi-v3.274.1) runs Automation
API programs: an inline program, which this Python process serves itself (no language host),
goes up with its outputs read back, a second run changes nothing, a changed program is an
update, and the stack is destroyed and removed.

Everything stays in tmp_path: the file backend, PULUMI_HOME (the CLI takes its home from the
passwd entry, not HOME, so without it ~/.pulumi gets the logs), HOME, temporary files and the
program's project directory. The update check and plugin downloads are off and PATH holds no
other pulumi or language host. On a cold machine the first test builds the CLI (about 6 minutes
on 2 cores, once).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pulumi
import pytest
from pulumi import automation

from kubestrata import pulumi_cli
from tests.pulumi import world

STACK = "engine-test"
REAL_PULUMI_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pulumi"


@pytest.fixture(scope="session")
def built_root() -> Path:
    if shutil.which("go") is None:
        pytest.skip("needs a Go toolchain to build the Pulumi CLI")
    return pulumi_cli.built_root(log=print)


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> Path:
    """tmp_path as Pulumi's whole world; returns the directory of the inline program's project."""
    world.isolate(monkeypatch, tmp_path, "engine test")
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    return tmp_path / "project"


def modified(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def greeting_program(text: str):
    """An inline program: a component resource holding text, and outputs computed from it."""
    def program():
        greeting = pulumi.ComponentResource("kubestrata:test:Greeting", "greeting",
                                            props={"text": text})
        pulumi.export("shout", pulumi.Output.from_input(text).apply(str.upper))
        pulumi.export("length", pulumi.Output.all(text, greeting.urn).apply(lambda v: len(v[0])))
    return program


def stack_of(program, project: Path, built_root: Path) -> automation.Stack:
    return automation.create_or_select_stack(
        stack_name=STACK, project_name="kubestrata-engine-test", program=program,
        opts=automation.LocalWorkspaceOptions(
            work_dir=str(project), pulumi_command=automation.PulumiCommand(root=str(built_root))))


def test_the_built_cli_is_the_pinned_version(built_root, isolated):
    printed = subprocess.run([str(built_root / "bin" / "pulumi"), "version"], capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip()
    assert printed == f"v{pulumi_cli.VERSION}"
    command = pulumi_cli.command()           # nothing on PATH: the built one
    assert command.command == str(built_root / "bin" / "pulumi")
    assert str(command.version) == pulumi_cli.VERSION


def test_an_inline_program_goes_up_once_and_is_destroyed(built_root, isolated, tmp_path):
    real_home_before = modified(REAL_PULUMI_HOME)
    stack = stack_of(greeting_program("hello"), isolated, built_root)
    first = stack.up(color="never")
    assert first.summary.resource_changes == {"create": 2}
    assert {k: v.value for k, v in first.outputs.items()} == {"shout": "HELLO", "length": 5}

    again = stack_of(greeting_program("hello"), isolated, built_root).up(color="never")
    assert again.summary.resource_changes == {"same": 2}

    changed = stack_of(greeting_program("goodbye"), isolated, built_root).up(color="never")
    assert changed.summary.resource_changes == {"same": 1, "update": 1}
    assert stack.outputs()["shout"].value == "GOODBYE"

    assert stack.destroy(color="never").summary.resource_changes == {"delete": 2}
    stack.workspace.remove_stack(STACK)
    assert STACK not in [s.name for s in stack.workspace.list_stacks()]
    assert not list((tmp_path / "state").rglob(f"{STACK}.json"))
    assert list((tmp_path / "pulumi-home").iterdir()), "the CLI did not use PULUMI_HOME"
    assert modified(REAL_PULUMI_HOME) == real_home_before, f"the CLI wrote to {REAL_PULUMI_HOME}"
