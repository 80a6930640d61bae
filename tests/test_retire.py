"""Which nodes `up` takes out when the topology shrinks: workers only, read from the inventory
the last `up` wrote; a control plane or an etcd member is refused before anything changes, and
so is a node that stays but would move to another address or pod range."""

import pytest

from kubestrata import inventory, orchestrate, topology


def written(tmp_path, name: str, **overrides):
    path = tmp_path / "hosts.yml"
    inventory.write(inventory.render(topology.load(name, overrides)), path)
    return path


def test_the_workers_the_topology_dropped_retire(tmp_path):
    hosts = written(tmp_path, "single-master", node_groups={"worker": {"count": 4}})
    smaller = topology.load("single-master", {"node_groups": {"worker": {"count": 2}}})
    assert orchestrate.retiring_nodes(smaller, hosts) == ["worker-3", "worker-4"]
    assert orchestrate.retiring_nodes(topology.load("single-master", {}), hosts) == \
        ["worker-3", "worker-4"]
    same = topology.load("single-master", {"node_groups": {"worker": {"count": 4}}})
    assert orchestrate.retiring_nodes(same, hosts) == []


def test_nothing_retires_without_an_inventory(tmp_path):
    assert orchestrate.retiring_nodes(topology.load("single-master", {}), tmp_path / "no.yml") == []


@pytest.mark.parametrize("group,before,after,node,inventory_group", [
    ("cp", 3, 2, "cp-3", "kube_control_plane"), ("etcd", 5, 3, "etcd-4", "etcd")])
def test_a_control_plane_or_etcd_member_is_refused(tmp_path, group, before, after, node,
                                                   inventory_group):
    hosts = written(tmp_path, "ha-external-etcd", node_groups={group: {"count": before}})
    fewer = topology.load("ha-external-etcd", {"node_groups": {group: {"count": after}}})
    with pytest.raises(orchestrate.ChangeRefused, match=rf"no longer has {node}, which is in "
                                                        rf".*{inventory_group}"):
        orchestrate.retiring_nodes(fewer, hosts)


def test_a_control_plane_added_to_an_earlier_group_is_refused_naming_the_addresses_to_keep(tmp_path):
    hosts = written(tmp_path, "multi-master")
    grown = topology.load("multi-master", {"node_groups": {"cp": {"count": 4}}})
    with pytest.raises(orchestrate.ChangeRefused) as refused:
        orchestrate.check_nodes_stay(grown, hosts)
    assert str(refused.value) == (
        "the topology would move worker-1 from 10.40.3.14 to 10.40.3.15 and 10.244.14.0/24 to "
        "10.244.15.0/24; worker-2 from 10.40.3.15 to 10.40.3.16 and 10.244.15.0/24 to "
        "10.244.16.0/24 (addresses are handed out in group order, and a node's pod range "
        "follows its address): keep them with node_groups[2].addresses: [10.40.3.14, "
        "10.40.3.15], or add nodes to the last group")

    kept = topology.load("multi-master", {"node_groups": {
        "cp": {"count": 4}, "worker": {"addresses": ["10.40.3.14", "10.40.3.15"]}}})
    orchestrate.check_nodes_stay(kept, hosts)
    assert kept.node("cp-4").address.exploded == "10.40.3.16"
    assert str(kept.node("cp-4").pod_cidr) == "10.244.16.0/24"


def test_workers_added_to_the_last_group_move_no_one(tmp_path):
    hosts = written(tmp_path, "single-master")
    orchestrate.check_nodes_stay(topology.load("single-master", {"node_groups": {"worker": {"count": 3}}}), hosts)
    orchestrate.check_nodes_stay(topology.load("single-master", {}), tmp_path / "no.yml")
