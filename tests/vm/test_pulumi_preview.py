"""`pulumi preview` of the three stacks the up test does not run (issue 14 §3), with the CLI and
the libvirt plugin built here, against the same private libvirtd (tests/vm/libvirt_host.py):
each plans to create exactly the resources of its topology and nothing else."""

from __future__ import annotations

import shutil
import time

import pytest
from pulumi import automation

from kubestrata import providers, pulumi_cli, topology
from tests.harness import needs_root
from tests.pulumi import world

pytestmark = [pytest.mark.lab, needs_root]

ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin"
# The stack, the Cluster and, per hypervisor, its component, provider, pool, base image,
# network component and network; per node its component, disk, seed and domain.
PER_STACK, PER_HYPERVISOR, PER_NODE = 2, 6, 4


@pytest.mark.parametrize("stack", [name for name in topology.NAMES if name != "all-in-one"])
def test_pulumi_preview_plans_every_resource_of_the_stack(stack, libvirt_host, debian_image,
                                                          tmp_path, monkeypatch):
    if shutil.which("go") is None:
        pytest.skip("needs go (the Pulumi CLI and the libvirt plugin are built from Go modules)")
    project = world.user_project(tmp_path, monkeypatch, stack, {
        "kubestrata:libvirtUri": libvirt_host.uri,
        "kubestrata:domainType": "qemu",
        "kubestrata:image": str(debian_image.disk),
        "kubestrata:sshPublicKey": ADMIN_KEY,
    }, "pulumi preview test")
    options = automation.LocalWorkspaceOptions(
        work_dir=str(project), pulumi_command=pulumi_cli.command(),
        env_vars=pulumi_cli.libvirt_plugin_env())
    started = time.monotonic()
    result = automation.create_or_select_stack(
        stack_name=stack, project_name=providers.PULUMI_PROJECT_NAME,
        program=providers.infra_program(), opts=options).preview(color="never")
    took = time.monotonic() - started
    nodes = len(topology.load(stack).nodes)
    assert result.change_summary == {"create": PER_STACK + PER_HYPERVISOR + PER_NODE * nodes}
    assert libvirt_host.virsh("list", "--all", "--name").stdout.split() == [], \
        "a preview changes nothing"
    print(f"\npulumi preview {stack}: {nodes} nodes, "
          f"{result.change_summary['create']} resources to create, {took:.0f} s")
