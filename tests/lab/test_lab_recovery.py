"""A lab half-created by an interrupted run is completed by up and removed by down; errors are clear."""

import os
import subprocess

import pytest

from kubestrata import topology
from kubestrata.lab import lab as lab_module
from kubestrata.lab import machine, network
from kubestrata.lab.lab import Lab, LabError
from tests.lab.conftest import leftovers, ssh, venv_tool


@pytest.fixture
def single_master():
    lab = Lab(topology.load("single-master"))
    lab.down()
    try:
        yield lab
    finally:
        lab.down()
    assert leftovers(lab) == []


def test_up_completes_a_lab_whose_nodes_died_or_lost_their_network(single_master):
    lab = single_master
    lab.up(log=lambda msg: None)
    running = machine.nspawn_pids(lab.name)
    machine.stop([running["worker-1"]])
    network.delete(network.node_namespace(lab.name, "worker-2"))

    changes = lab.up(log=lambda msg: None)

    assert "worker-1: booted" in changes
    assert "worker-2: network namespace at 10.40.2.12" in changes
    assert "worker-2: booted" in changes
    assert not any(c.startswith("cp-1") for c in changes)
    for node in lab.topology.nodes:
        assert ssh(lab, node, "hostname").strip() == node.name


def test_down_removes_a_lab_created_halfway_without_any_state(single_master):
    lab = single_master
    network.ensure_lab(lab.name, "10.40.2.1", 24)
    network.ensure_node(lab.name, "cp-1", "10.40.2.10", 24, "10.40.2.1")
    assert not lab.dir.exists() and network.namespaces(lab.name)
    assert lab.down()
    assert leftovers(lab) == []


def test_lab_down_removes_a_lab_whose_topology_file_is_gone(capsys):
    from kubestrata import cli
    name = "gone-topology"          # a lab of a topology file since deleted
    lab_module.lab_dir(name).mkdir(parents=True)
    network.ensure_lab(name, "10.40.9.1", 24)
    network.ensure_node(name, "node-1", "10.40.9.10", 24, "10.40.9.1")

    assert cli.main(["lab", "down", name]) == 0

    assert "lab gone-topology: down" in capsys.readouterr().out
    assert network.namespaces(name) == [] and not lab_module.lab_dir(name).exists()
    assert cli.main(["lab", "down", name]) == 2, "with no lab left the name is an unknown topology"


def test_up_refuses_a_lab_running_nodes_the_topology_dropped(single_master):
    lab = single_master
    lab.up(log=lambda msg: None)
    smaller = Lab(topology.load("single-master", {"node_groups": {"worker": {"count": 1}}}))
    with pytest.raises(LabError, match=r"no longer has \(worker-2\).*lab down single-master"):
        smaller.up(log=lambda msg: None)


def test_up_removes_a_dropped_node_it_may_retire_and_nothing_else(single_master):
    lab = single_master
    lab.up(log=lambda msg: None)
    node_dir = lab.dir / "nodes" / "worker-2"
    smaller = Lab(topology.load("single-master", {"node_groups": {"worker": {"count": 1}}}))
    changes = smaller.up(log=lambda msg: None, retire=frozenset({"worker-2"}))
    assert "worker-2: stopped" in changes
    assert set(machine.nspawn_pids(lab.name)) == {"cp-1", "worker-1"}
    assert network.node_namespace(lab.name, "worker-2") not in network.namespaces(lab.name)
    assert not node_dir.exists()
    assert not (machine.cgroup_hierarchies()[0] / machine.cgroup_path(lab.name, "worker-2")).exists()
    assert "worker-2" not in smaller.inventory_path.read_text()
    assert ssh(lab, lab.topology.node("worker-1"), "hostname").strip() == "worker-1"


def test_lab_exec_runs_in_the_node_and_returns_its_exit_code(single_master):
    lab = single_master
    lab.up(log=lambda msg: None)
    cli = venv_tool("kubestrata")
    out = subprocess.run([cli, "lab", "exec", lab.name, "worker-2", "--", "hostname"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "worker-2"
    failed = subprocess.run([cli, "lab", "exec", lab.name, "cp-1", "--", "sh", "-c", "exit 7"])
    assert failed.returncode == 7


def test_not_root_is_refused_before_anything_changes(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="need root.*sudo"):
        Lab(topology.load("all-in-one")).up(log=lambda msg: None)


def test_missing_tools_are_named_with_the_apt_get_line(monkeypatch):
    monkeypatch.setattr(lab_module, "REQUIRED_COMMANDS",
                        {"no-such-nspawn": "systemd-container", "no-such-debootstrap": "debootstrap"})
    with pytest.raises(LabError, match="apt-get install -y debootstrap systemd-container"):
        Lab(topology.load("all-in-one")).up(log=lambda msg: None)


def test_down_removes_nodes_whose_nspawn_was_killed(single_master):
    lab = single_master
    lab.up(log=lambda msg: None)
    for pid in machine.nspawn_pids(lab.name).values():
        os.kill(pid, 9)          # the nodes' systemd keeps running without its nspawn
    assert lab.down()
    assert leftovers(lab) == []
    assert not machine.cgroup_pids(machine.cgroup_path(lab.name))
