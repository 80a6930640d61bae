"""The Pulumi CLI the Automation API runs: the one on PATH, else the one built here from its Go
module (the gobuild recipe pulumi-v<VERSION>), laid out as pulumi's installer does
(ROOT/bin/pulumi) so that `automation.PulumiCommand(root=ROOT)` runs it.

The built CLI has no Python language host (pulumi-language-python: its Go module is not on the
module proxy), so it runs inline programs, which the Python process serves itself, and not
programs named by a project's `main:` (infra/)."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubestrata import gobuild

VERSION = "3.274.1"
LANGUAGE_HOST = "pulumi-language-python"


def built_root(log=print) -> Path:
    """The directory whose bin/pulumi is the CLI at VERSION, built if the cache lacks it."""
    return gobuild.build("pulumi", VERSION, log=log)


def command(log=print):
    """The PulumiCommand for LocalWorkspaceOptions(pulumi_command=...): None (pulumi on PATH)
    when PATH has a CLI, else the built one."""
    if shutil.which("pulumi") is not None:
        return None
    from pulumi import automation
    return automation.PulumiCommand(root=str(built_root(log)))


def runs_project_programs() -> bool:
    """Whether the CLI command() picks can run a project's own program: pulumi's on PATH (it
    comes with its language hosts), or the built one with a Python language host on PATH."""
    return shutil.which("pulumi") is not None or shutil.which(LANGUAGE_HOST) is not None
