"""Which nodes `up` takes out when the topology shrinks: workers only, read from the inventory
the last `up` wrote; a control plane or an etcd member is refused before anything changes."""

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
    with pytest.raises(orchestrate.RetireRefused, match=rf"no longer has {node}, which is in "
                                                        rf".*{inventory_group}"):
        orchestrate.retiring_nodes(fewer, hosts)
