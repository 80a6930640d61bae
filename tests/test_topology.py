"""The four topologies as data: counts, roles, derived addresses and pod CIDRs, overrides."""

import ipaddress

import pytest

from kubestrata import topology

EXPECTED = {   # topology: (etcd, control_plane, worker, nodes, HA)
    "all-in-one": (1, 1, 1, 1, False),
    "single-master": (1, 1, 2, 3, False),
    "multi-master": (1, 3, 2, 6, True),
    "ha-external-etcd": (3, 3, 2, 8, True),
}


@pytest.mark.parametrize("name", topology.NAMES)
def test_builtin_topologies_have_the_documented_shape(name):
    t = topology.load(name)
    etcd, cp, worker, total, ha = EXPECTED[name]
    assert (len(t.with_role("etcd")), len(t.with_role("control_plane")),
            len(t.with_role("worker")), len(t.nodes), t.is_ha) == (etcd, cp, worker, total, ha)


def test_single_master_runs_etcd_on_the_control_plane_node():
    t = topology.load("single-master")
    assert t.with_role("etcd") == t.with_role("control_plane")


@pytest.mark.parametrize("name", ["multi-master", "ha-external-etcd"])
def test_etcd_is_outside_the_control_plane_in_multi_node_ha(name):
    t = topology.load(name)
    assert not set(t.with_role("etcd")) & set(t.with_role("control_plane"))


@pytest.mark.parametrize("name", topology.NAMES)
def test_addresses_are_unique_inside_the_network_and_not_reserved(name):
    t = topology.load(name)
    addresses = [n.address for n in t.nodes]
    assert len(set(addresses)) == len(addresses)
    assert all(a in t.network for a in addresses)
    assert t.gateway not in addresses and t.virtual_ip not in addresses


@pytest.mark.parametrize("name", topology.NAMES)
def test_every_kubernetes_node_gets_its_own_pod_range(name):
    t = topology.load(name)
    ranges = [n.pod_cidr for n in t.nodes if n.is_kubernetes_node]
    assert None not in ranges and len(set(ranges)) == len(ranges)
    assert all(r.subnet_of(t.pod_cidr) for r in ranges)
    assert all(n.pod_cidr is None for n in t.nodes if not n.is_kubernetes_node)


def test_addresses_are_derived_in_group_order_skipping_the_virtual_ip():
    t = topology.load("multi-master", {"network": {"first_host": 4}})
    assert [str(n.address) for n in t.nodes][:3] == ["10.40.3.4", "10.40.3.6", "10.40.3.7"]


def test_fixed_addresses_override_derivation():
    t = topology.load("single-master", {"node_groups": {"worker": {"addresses": ["10.40.2.200"]}}})
    assert str(t.node("worker-1").address) == "10.40.2.200"
    assert str(t.node("worker-2").address) == "10.40.2.11"


def test_counts_sizes_and_cidrs_change_through_overrides():
    t = topology.load("ha-external-etcd", {
        "node_groups": {"worker": {"count": 5, "memory_mib": 8192}},
        "network": {"cidr": "10.50.0.0/16"}, "api": {"virtual_ip": "10.50.0.5"}})
    workers = t.with_role("worker")
    assert len(workers) == 5 and {w.memory_mib for w in workers} == {8192}
    assert t.network == ipaddress.ip_network("10.50.0.0/16")


def test_set_assignments_parse_into_overrides():
    assert topology.parse_assignment("node_groups.worker.count=3") == \
        {"node_groups": {"worker": {"count": 3}}}
    assert topology.parse_assignment("cni=flannel") == {"cni": "flannel"}


def test_api_endpoint_is_the_virtual_ip_for_ha_and_the_control_plane_otherwise():
    assert topology.load("ha-external-etcd").api_endpoint == ("10.40.4.5", 8443)
    assert topology.load("single-master").api_endpoint == ("10.40.2.10", 6443)


def test_a_copied_topology_file_loads(tmp_path):
    copy = tmp_path / "mine.yaml"
    copy.write_text((topology.TOPOLOGY_DIR / "single-master.yaml").read_text()
                    .replace("name: single-master", "name: mine"))
    assert topology.load(str(copy)).name == "mine"


def test_printed_commands_name_a_built_in_topology_by_name_and_any_other_by_its_file(tmp_path):
    assert topology.load("single-master").reference == "single-master"
    custom = tmp_path / "my lab.yaml"
    custom.write_text((topology.TOPOLOGY_DIR / "all-in-one.yaml").read_text())
    loaded = topology.load(str(custom))
    assert loaded.name == "all-in-one" and loaded.reference == f"'{custom}'"
