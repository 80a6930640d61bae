"""The Pulumi CLI the Automation API runs: the one on PATH, else the one built here from its Go
module (the gobuild recipe pulumi-v<VERSION>), laid out as pulumi's installer does
(ROOT/bin/pulumi) so that `automation.PulumiCommand(root=ROOT)` runs it.

The built CLI has no Python language host (pulumi-language-python: its Go module is not on the
module proxy), so it runs inline programs, which the Python process serves itself, and not
programs named by a project's `main:`: kubestrata runs infra/'s program() inline
(providers.LibvirtProvider).

With it comes the libvirt resource plugin built here (gobuild component pulumi-libvirt):
terraform-provider-libvirt behind pulumi-terraform-bridge with kubestrata's own mapping to the
pulumi_libvirt SDK's tokens, not pulumi-libvirt's release binary. It reports the Terraform
provider's version (e.g. 0.8.3+terraform-provider-libvirt.kubestrata). The engine finds it as an
ambient plugin: first on the PATH of the workspace's env_vars, where it is used whatever version
the SDK asks for (the engine warns "using pulumi-resource-libvirt from $PATH at ..."). Its plugin
cache would only take it installed under the requested version, 0.5.4, which it is not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kubestrata import gobuild

VERSION = "3.274.1"
LANGUAGE_HOST = "pulumi-language-python"
LIBVIRT_PLUGIN = "pulumi-resource-libvirt"


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


def libvirt_plugin_dir(log=print) -> Path:
    """The directory of the built libvirt plugin (and its schema), built if the cache lacks it."""
    return gobuild.build("pulumi-libvirt", "", log=log) / "bin"


def libvirt_plugin_env(log=print) -> dict[str, str]:
    """env_vars for LocalWorkspaceOptions that let the engine find the libvirt plugin: none when
    PATH has a pulumi (that CLI downloads pulumi-libvirt's own plugin), else PATH with the built
    plugin's directory first. A failed build is a GoBuildError of one line."""
    if shutil.which("pulumi") is not None:
        return {}
    try:
        directory = libvirt_plugin_dir(log)
    except (gobuild.GoBuildError, OSError) as exc:
        raise gobuild.GoBuildError("building the Pulumi libvirt plugin failed: "
                                   + " ".join(str(exc).split())[-400:]) from None
    return {"PATH": os.pathsep.join([str(directory), os.environ.get("PATH", "")])}
