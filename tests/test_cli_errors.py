"""The command line names what is wrong in one line; a programming error is not dressed up as one."""

import subprocess

import pytest

from kubestrata import cli, providers, topology


def test_an_unknown_node_is_named_with_the_topologys_nodes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv, **_: calls.append(argv) or 0)
    assert cli.main(["lab", "exec", "single-master", "cp-9", "--", "true"]) == 2
    assert capsys.readouterr().err == ("error: no node 'cp-9' in topology single-master; "
                                       "its nodes: cp-1, worker-1, worker-2\n")
    assert calls == []


@pytest.mark.parametrize("argv", [["lab", "run", "all-in-one", "--set", "name=x", "--", "true"],
                                  ["lab", "exec", "all-in-one", "node-1", "--set", "name=x", "--",
                                   "true"]])
def test_options_after_the_topology_are_named_not_run_as_the_command(argv, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv, **_: calls.append(argv) or 0)
    assert cli.main(argv) != 0
    assert "put --set name=x before the topology: what follows the topology is the command" \
        in capsys.readouterr().err
    assert calls == []


def test_looking_up_an_unknown_node_raises_a_topology_error():
    with pytest.raises(topology.TopologyError, match="no node 'nope' in topology all-in-one"):
        topology.load("all-in-one").node("nope")


def test_a_key_error_of_the_code_is_not_taken_for_a_users_error(monkeypatch):
    def broken(args):
        return {}["missing"]
    monkeypatch.setattr(cli, "cmd_validate", broken)
    with pytest.raises(KeyError):
        cli.main(["validate", "all-in-one"])


def test_extra_vars_from_a_broken_file_are_one_error_line(tmp_path):
    broken = tmp_path / "vars.yml"
    broken.write_bytes(b"kube_version: [1.36\n")
    with pytest.raises(topology.TopologyError) as error:
        cli._extra_vars([f"@{broken}"])
    assert error.value.problems == [f"-e @{broken}: the file is not valid YAML: line 2, column 1: "
                                    "expected ',' or ']', but got '<stream end>'; fix the YAML"]


def test_the_ssh_line_of_a_node_missing_from_a_libvirt_inventory_says_so(monkeypatch):
    provider = providers.provider_for("libvirt", topology.load("single-master"))
    monkeypatch.setattr(providers.remote, "hostvars", lambda inventory: {})
    assert provider.ssh_hint("worker-2") == f"(not in {provider.inventory_path()} yet)"
