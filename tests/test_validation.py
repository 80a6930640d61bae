"""Every validation rule: a bad topology is refused with the field named and a fix given."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata import topology
from kubestrata.cli import main

CASES = [
    # (base topology, overrides, field named, words of the fix)
    ("ha-external-etcd", {"node_groups": {"etcd": {"count": 2}}}, "node_groups[0].count", "odd"),
    ("multi-master", {"node_groups": {"cp": {"count": 1}}}, "node_groups[1].count",
     "at least 2 control-plane"),
    ("multi-master", {"api": {"virtual_ip": None}}, "api.virtual_ip", "need a virtual IP"),
    ("multi-master", {"api": {"virtual_ip": "10.99.0.5"}}, "api.virtual_ip", "outside the node network"),
    ("multi-master", {"node_groups": {"cp": {"addresses": ["10.40.3.5"]}}}, "api.virtual_ip",
     "also the address of cp-1"),
    ("multi-master", {"api": {"port": 6443}}, "api.port", "8443"),
    ("single-master", {"node_groups": {"cp": {"addresses": ["10.40.2.20"]},
                                       "worker": {"addresses": ["10.40.2.20"]}}},
     "node_groups[1].addresses", "share the address"),
    ("single-master", {"pods": {"cidr": "10.244.0.0/22"}, "node_groups": {"worker": {"addresses": ["10.40.2.14"]}}},
     "pods.cidr", "cp-1 and worker-1 would share the pod range 10.244.2.0/24"),
    ("single-master", {"node_groups": {"worker": {"addresses": ["10.41.0.7"]}}},
     "node_groups[1].addresses", "outside the node network"),
    ("single-master", {"node_groups": {"worker": {"addresses": ["10.40.2.1"]}}},
     "node_groups[1].addresses", "gateway"),
    ("single-master", {"node_groups": [
        {"name": "cp", "roles": ["etcd", "control_plane"], "count": 1, "cpus": 2,
         "memory_mib": 2048, "disk_gib": 20},
        {"name": "cp", "roles": ["worker"], "count": 1, "cpus": 2, "memory_mib": 2048,
         "disk_gib": 20}]}, "node_groups[1].name", "duplicate group name"),
    ("single-master", {"network": {"cidr": "10.244.0.0/24"}}, "pods.cidr", "overlaps"),
    ("single-master", {"services": {"cidr": "10.244.128.0/20"}}, "services.cidr", "overlaps"),
    ("single-master", {"node_groups": {"cp": {"cpus": 1}}}, "node_groups[0].cpus",
     "minimum of 2 for a control_plane node"),
    ("single-master", {"node_groups": {"cp": {"memory_mib": 1024}}}, "node_groups[0].memory_mib",
     "minimum of 1700"),
    ("single-master", {"node_groups": {"worker": {"roles": ["wroker"]}}}, "node_groups[1].roles[0]",
     "unknown role 'wroker'"),
    ("single-master", {"runtime": "docker"}, "runtime", "containerd, cri-o"),
    ("single-master", {"cni": "weave"}, "cni", "bridge, flannel, calico"),
    ("single-master", {"versions": {"kubernetes": "v1.36"}}, "versions.kubernetes", "1.36.3"),
    # versions that cannot work together
    ("single-master", {"versions": {"containerd": "1.7.24"}}, "versions.containerd",
     "Kubernetes 1.36.3 needs containerd 2"),
    ("single-master", {"versions": {"kubernetes": "1.35.2", "containerd": "1.7.24"}},
     "versions.containerd", "configuration the containerd role writes (version 3"),
    ("single-master", {"versions": {"etcd": "3.5.23"}}, "versions.etcd",
     "older than 3.5.24, the oldest external etcd kubeadm 1.36 accepts"),
    ("single-master", {"versions": {"kubernetes": "1.39.0", "etcd": "3.5.16"}}, "versions.etcd",
     "the oldest external etcd kubeadm 1.39 accepts"),
    ("single-master", {"versions": {"runc": "1.2.6"}}, "versions.runc",
     "older than containerd 2 needs (1.3 or later)"),
    ("single-master", {"netwrok": {"cidr": "10.0.0.0/24"}}, "netwrok", "unknown key"),
    ("single-master", {"node_groups": {"worker": {"cpu": 2}}}, "node_groups[1].cpu", "unknown key"),
    ("single-master", {"node_groups": {"worker": {"count": "2"}}}, "node_groups[1].count",
     "remove the quotes"),
    ("single-master", {"node_groups": {"worker": {"count": True}}}, "node_groups[1].count",
     "whole number"),
    ("single-master", {"network": {"cidr": "10.40.2.1/24"}}, "network.cidr", "host bits zero"),
    ("single-master", {"network": {"first_host": 253}}, "node_groups[1].addresses",
     "widen network.cidr"),
    ("single-master", {"pods": {"cidr": "10.244.0.0/23"}}, "pods.cidr", "holds only 2"),
    ("single-master", {"node_groups": {"cp": {"roles": ["control_plane"]}}}, "node_groups",
     "no node has the etcd role"),
    ("single-master", {"versions": {"etcd": None}}, "versions.etcd", "missing"),
    ("single-master", {"node_groups": {"worker": {"addresses": ["10.40.2.300"]}}},
     "node_groups[1].addresses[0]", "write an IPv4 address"),
    ("single-master", {"network": {"cidr": "10.40.2.0/32"}}, "network.cidr",
     "room for the gateway and the nodes"),
    ("single-master", {"name": "single-master\n"}, "name", "malformed"),
    # two services of one node on one port
    ("single-master", {"api": {"port": 2379}}, "api.port",
     "the API server (api.port) and etcd's client port both listen on 2379 on cp-1"),
    ("single-master", {"api": {"port": 2380}}, "api.port", "etcd's peer port"),
    ("single-master", {"api": {"port": 10250}}, "api.port", "the kubelet"),
    ("single-master", {"api": {"port": 10257}}, "api.port", "kube-controller-manager"),
    ("single-master", {"api": {"port": 10259}}, "api.port", "kube-scheduler"),
    ("multi-master", {"api": {"port": 6443}}, "api.port",
     "haproxy (api.port) and the API server both listen on 6443 on cp-1, cp-2, cp-3"),
    ("ha-external-etcd", {"api": {"port": 2380},
                          "node_groups": {"etcd": {"roles": ["etcd", "lb"]}}},
     "api.port", "haproxy (api.port) and etcd's peer port both listen on 2380 on etcd-1"),
]


@pytest.mark.parametrize("base,overrides,field,fix", CASES,
                         ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_bad_topology_names_field_and_fix(base, overrides, field, fix):
    with pytest.raises(topology.TopologyError) as error:
        topology.load(base, overrides)
    matching = [p for p in error.value.problems if p.startswith(f"{field}:")]
    assert matching, error.value.problems
    assert any(fix in p for p in matching), matching


@pytest.mark.parametrize("versions", [
    {"etcd": "3.5.24"},                                     # kubeadm 1.36's minimum itself
    {"etcd": "3.6.4"},
    {"kubernetes": "1.33.7", "etcd": "3.5.16"},             # before kubeadm 1.34 raised it
    {"runc": "1.3.0"},
])
def test_versions_that_work_together_are_accepted(versions):
    assert topology.load("single-master", {"versions": versions}).versions.items() >= \
        versions.items()


def test_cri_o_topologies_are_not_held_to_containerd_versions():
    cri_o = topology.load("single-master", {"runtime": "cri-o", "versions": {
        "containerd": "1.7.24", "runc": "1.1.15"}})
    assert cri_o.runtime == "cri-o"


@pytest.mark.parametrize("name", topology.NAMES)
def test_builtin_topologies_are_valid(name, capsys):
    assert main(["validate", name]) == 0
    assert f"{name}: valid" in capsys.readouterr().out


def test_unknown_topology_name_is_refused_with_the_choices(capsys):
    assert main(["validate", "three-masters"]) == 2
    err = capsys.readouterr().err
    assert "unknown topology 'three-masters'" in err and "ha-external-etcd" in err


def test_missing_file_is_refused(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no file at" in capsys.readouterr().err


def test_every_problem_gets_its_own_line(capsys, tmp_path):
    spec = yaml.safe_load((topology.TOPOLOGY_DIR / "ha-external-etcd.yaml").read_text())
    spec["runtime"] = "docker"
    spec["cni"] = "weave"
    spec["extra"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["extra", "runtime", "cni"]


def test_set_overrides_reach_validation(capsys):
    assert main(["validate", "ha-external-etcd", "--set", "node_groups.etcd.count=4"]) == 2
    assert "node_groups[0].count: 4 etcd members" in capsys.readouterr().err


def test_the_console_command_exits_non_zero_on_problems():
    kubestrata = Path(sys.executable).with_name("kubestrata")
    result = subprocess.run([str(kubestrata), "validate", "single-master", "--set", "cni=weave"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.startswith("error: cni: unknown 'weave'")


def test_a_load_balancer_node_of_its_own_may_take_the_api_servers_port():
    lb = {"roles": ["lb"], "count": 2, "cpus": 1, "memory_mib": 512, "disk_gib": 10}
    t = topology.load("ha-external-etcd", {"api": {"port": 6443}, "node_groups": {"lb": lb}})
    assert t.api_endpoint == ("10.40.4.5", 6443)


BROKEN_FILES = {
    "not-utf-8.yaml": b"name: caf\xe9\n",
    "nested.yaml": b"[" * 10000 + b"]" * 10000,
    "a-list.yaml": b"- name: all-in-one\n",
    "a-string.yaml": b"all-in-one\n",
    "empty.yaml": b"",
    "syntax.yaml": b"name: [all-in-one\nnetwork: {\n",
    "control-character.yaml": b"name: a\x00b\n",
    "impossible-date.yaml": b"name: 2001-02-30\n",
    "bad-tag.yaml": b"name: !!bool maybe\n",
    "bad-timestamp.yaml": b"name: !!timestamp 1\n",
    "python-tag.yaml": b"name: !!python/object/apply:os.system [true]\n",
}


@pytest.mark.parametrize("name", BROKEN_FILES)
def test_a_broken_file_is_one_error_line_naming_it(name, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(BROKEN_FILES[name])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and (name in err or err.startswith("error: name: ")), err


@pytest.mark.parametrize("assignment,error", [
    ("node_groups.extra=3", "error: node_groups.extra: give the group as a mapping of its "
                            "settings, e.g. --set node_groups.extra.count=3"),
    ("node_groups=3", "error: node_groups: must be a list"),
    ("api=[", "error: --set api=[: the value is not valid YAML"),
    ("a..b=1", "error: --set a..b=1: write it as FIELD.PATH=VALUE"),
    ("=1", "error: --set =1: write it as FIELD.PATH=VALUE"),
    ("name=" + "[" * 10000, "error: --set 'name=[[[[[[[[[[[[...[[[[[[[[[[[[[[[[[[': the value "
                            "is nested too deeply to read"),
])
def test_a_bad_set_is_one_error_line(assignment, error, capsys):
    assert main(["validate", "single-master", "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert err.startswith(error) and len(err.splitlines()) == 1, err


def test_long_deep_or_self_referring_values_are_shortened_in_the_error_lines(tmp_path, capsys):
    path = tmp_path / "values.yaml"
    path.write_text((topology.TOPOLOGY_DIR / "single-master.yaml").read_text()
                    + "cni: " + "x" * 5000 + "\nruntime: " + "[" * 300 + "]" * 300
                    + "\ndescription: &d [*d, *d]\n")     # later keys replace the file's own
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in lines] == [" description", " runtime", " cni"]
    assert all(len(line) < 300 for line in lines), lines
