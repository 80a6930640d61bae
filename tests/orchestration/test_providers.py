"""Providers refuse clearly, before creating anything, when their tools or settings are missing."""

import shutil

import pytest

from kubestrata import gobuild, providers, pulumi_cli, topology
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


def test_libvirt_with_go_but_no_pulumi_cli_names_the_missing_language_host(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/go" if name == "go" else None)
    provider = providers.provider_for("libvirt", topology.load("single-master"))
    with pytest.raises(providers.ProviderError, match=r"has no Python language host "
                                                      r"\(pulumi-language-python\) to run infra/"):
        provider.create(log=print)


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
