"""Providers refuse clearly, before creating anything, when their tools or settings are missing."""

import shlex
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from pulumi import automation

from kubestrata import gobuild, hostkeys, paths, playbook, providers, pulumi_cli, topology, vms
from kubestrata.cli import main


def test_libvirt_without_the_pulumi_cli_names_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["up", "all-in-one", "--provider", "libvirt"]) == 1
    err = capsys.readouterr().err
    assert "the Pulumi CLI is not installed" in err and "docs/libvirt.md" in err


def test_libvirt_without_a_passphrase_says_which_variable(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    provider = providers.provider_for("libvirt", topology.load("single-master"))
    with pytest.raises(providers.ProviderError, match="PULUMI_CONFIG_PASSPHRASE"):
        provider.create(log=print)


def test_libvirt_needs_a_stack_file_for_a_custom_topology(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    custom = tmp_path / "mine.yaml"
    custom.write_text((topology.TOPOLOGY_DIR / "all-in-one.yaml").read_text()
                      .replace("name: all-in-one", "name: mine"))
    provider = providers.provider_for("libvirt", topology.load(str(custom)))
    with pytest.raises(providers.ProviderError, match="no stack file Pulumi.mine.yaml"):
        provider.create(log=print)


def test_down_asks_for_confirmation_unless_yes(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["down", "all-in-one"]) == 1
    assert "confirm with --yes" in capsys.readouterr().err


@pytest.mark.parametrize("value, problem", [("novalue", "give NAME=VALUE or @FILE"),
                                            ("@/nonexistent/vars.yml", "no file /nonexistent/vars.yml")])
def test_bad_extra_vars_are_refused_before_anything_is_created(capsys, value, problem):
    assert main(["up", "all-in-one", "--set", "name=never-created", "-e", value]) == 2
    assert problem in capsys.readouterr().err
    assert not providers.provider_for("lab", topology.load(
        "all-in-one", {"name": "never-created"})).inventory_path().exists()


class FakeStack:
    """What create_or_select_stack returns, its up and destroy failing as the CLI does."""
    def __init__(self, failure: str):
        self.failure = failure

    def _fail(self, on_output, **options):
        self.options = options
        on_output("Updating (all-in-one):")
        raise automation.errors.CommandError(automation.CommandResult(
            stdout="Updating (all-in-one):\n", stderr=self.failure, code=255))
    up = destroy = _fail


@pytest.fixture
def fake_pulumi(monkeypatch, tmp_path):
    """A libvirt provider whose workspace is tmp_path/project, every stack a FakeStack."""
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "unused")
    monkeypatch.setattr(pulumi_cli, "command", lambda log: None)
    monkeypatch.setattr(pulumi_cli, "libvirt_plugin_env", lambda log: {"PATH": "/plugin"})
    monkeypatch.setattr(paths, "PULUMI_PROJECT", tmp_path / "project")
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(playbook, "RUNS_DIR", tmp_path / "runs")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "Pulumi.all-in-one.yaml").write_text("config: {}\n")
    calls = []

    def create_or_select_stack(**arguments):
        stack = FakeStack("error: update failed\n  error: libvirt_domain all-in-one-node-1: "
                          "cannot start:\n    more detail\n  error: a second error\n")
        calls.append({**arguments, "stack": stack})
        return stack
    monkeypatch.setattr(automation, "create_or_select_stack", create_or_select_stack)
    return calls


def test_libvirt_runs_infra_as_an_inline_program_in_the_project(fake_pulumi, tmp_path):
    provider = providers.provider_for("libvirt", topology.load("all-in-one"))
    with pytest.raises(providers.ProviderError):
        provider.create(log=print)
    [call] = fake_pulumi
    assert call["stack_name"] == "all-in-one" and call["project_name"] == "kubestrata"
    assert call["program"] is providers.infra_program()
    assert call["program"].__module__ == "program"
    assert call["opts"].work_dir == str(tmp_path / "project")
    assert call["opts"].env_vars == {"PATH": "/plugin"}


def test_libvirt_asks_pulumi_for_a_new_machine_of_a_renewed_node(fake_pulumi):
    """`kubestrata replace` on libvirt: the node's next generation is recorded (with a new host
    key) before pulumi up, and stays recorded when that fails, so the next up makes it."""
    (paths.STATE_DIR / "libvirt" / "all-in-one").mkdir(parents=True)
    key = paths.STATE_DIR / "libvirt" / "all-in-one" / "node-1_ed25519"
    key.write_text("the old machine's key")
    provider = providers.provider_for("libvirt", topology.load("all-in-one"))
    with pytest.raises(providers.ProviderError):
        provider.create(log=print, renew=frozenset({"node-1"}))
    assert vms.generations("all-in-one") == {"node-1": 1}
    assert not key.exists()
    assert len(fake_pulumi) == 1


@pytest.mark.parametrize("command", ["up", "down"])
def test_a_failed_pulumi_run_is_one_line_naming_the_stack_and_the_output(fake_pulumi, tmp_path,
                                                                          capsys, command):
    argv = ["up", "all-in-one", "--provider", "libvirt"] if command == "up" else \
        ["down", "all-in-one", "--provider", "libvirt", "--yes"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    [output] = (tmp_path / "runs").glob("*/output.log")
    pulumi_command = "up" if command == "up" else "destroy"
    assert captured.err == (f"kubestrata: pulumi {pulumi_command} of libvirt stack all-in-one "
                            "failed: libvirt_domain all-in-one-node-1: cannot start: more detail "
                            "(Pulumi's "
                            f"output: {output})\n")
    assert "Traceback" not in captured.out + captured.err
    assert "Updating (all-in-one):" in captured.out, "Pulumi's progress is shown"
    assert "a second error" in output.read_text()


def test_libvirt_says_when_building_the_pulumi_cli_fails(monkeypatch):
    monkeypatch.setattr(shutil, "which",
                        lambda name: None if name == "pulumi" else "/usr/bin/" + name)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "unused")

    def too_old(log):
        raise gobuild.GoBuildError("Go go1.25.0 is too old: Kubernetes needs Go 1.26 or newer")
    monkeypatch.setattr(pulumi_cli, "built_root", too_old)
    provider = providers.provider_for("libvirt", topology.load("single-master"))
    with pytest.raises(providers.ProviderError, match="no Pulumi CLI on PATH, and building it "
                                                      "failed: Go go1.25.0 is too old"):
        provider.create(log=print)


def test_up_and_down_refresh_the_state_first(fake_pulumi):
    """A VM deleted by hand is seen missing and made again; down does not trip over it."""
    provider = providers.provider_for("libvirt", topology.load("all-in-one"))
    for operation in (provider.create, provider.destroy):
        with pytest.raises(providers.ProviderError):
            operation(log=print)
    assert [call["stack"].options["refresh"] for call in fake_pulumi] == [True, True]


ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubestrataTestAdminKey0000000000000000 admin"


@pytest.fixture
def libvirt_inventory(tmp_path, monkeypatch):
    """single-master's inventory as the Pulumi program writes it, for a remote hypervisor."""
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")
    topo = topology.load("single-master")
    uri = "qemu+ssh://admin@kvm2/system?keyfile=/home/me/.ssh/id_ed25519"
    vms.write_access_files(topo, vms.Settings(ADMIN_KEY, uri=uri),
                           hostkeys.ensure(tmp_path / "keys", [n.name for n in topo.nodes]))
    return uri


def test_console_is_virsh_with_the_nodes_hypervisor(libvirt_inventory, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert main(["console", "single-master", "worker-1", "--provider", "libvirt"]) == 0
    argv = ["virsh", "-c", libvirt_inventory, "console", "single-master-worker-1"]
    assert calls == [argv]
    assert capsys.readouterr().err == shlex.join(argv) + "\n"


def test_console_before_up_or_of_an_unknown_node_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")
    assert main(["console", "single-master", "cp-1", "--provider", "libvirt"]) == 1
    inventory = tmp_path / "inventories" / "libvirt" / "single-master" / "hosts.yml"
    assert capsys.readouterr().err == (f"kubestrata: cp-1 is not in {inventory} yet: run "
                                       "kubestrata up single-master --provider libvirt\n")
    assert main(["console", "single-master", "cp-9", "--provider", "libvirt"]) == 2
    assert "no node 'cp-9' in topology single-master" in capsys.readouterr().err


def test_console_of_a_lab_node_is_a_shell_on_it():
    argv = providers.provider_for("lab", topology.load("single-master")).console_argv("cp-1")
    assert argv[:3] == ["ip", "netns", "exec"] and argv[-3:] == ["root@10.40.2.10", "--", "bash"]


def test_machines_not_ready_name_their_console_with_its_uri(libvirt_inventory, monkeypatch):
    provider = providers.provider_for("libvirt", topology.load("single-master"))
    monkeypatch.setattr(providers.LibvirtProvider, "_pulumi", lambda *arguments: SimpleNamespace(
        summary=SimpleNamespace(resource_changes={"same": 20})))
    monkeypatch.setattr(providers.remote, "wait_until_ready",
                        lambda hosts, timeout, ready: {"cp-1": "no SSH"})
    with pytest.raises(providers.ProviderError) as error:
        provider.create(log=print)
    assert str(error.value) == (
        f"machines not ready: cp-1: no SSH. Read their serial console: virsh -c "
        f"'{libvirt_inventory}' console single-master-cp-1 (log: "
        "/var/log/libvirt/qemu/single-master-cp-1-console.log)")
