"""The inventory contract: groups, host vars and cluster vars rendered from the topology."""

import pytest
import yaml

from kubestrata import inventory, topology


def groups(inv, name):
    return set(inv["all"]["children"][name].get("hosts") or {})


@pytest.mark.parametrize("name", topology.NAMES)
def test_groups_follow_the_roles(name):
    t = topology.load(name)
    inv = inventory.render(t)
    assert groups(inv, "etcd") == {n.name for n in t.with_role("etcd")}
    assert groups(inv, "kube_control_plane") == {n.name for n in t.with_role("control_plane")}
    assert groups(inv, "kube_node") == {n.name for n in t.with_role("worker")}
    assert groups(inv, "lb") == {n.name for n in t.load_balancers}
    assert set(inv["all"]["children"]["k8s_cluster"]["children"]) == \
        {"kube_control_plane", "kube_node"}


@pytest.mark.parametrize("name", topology.NAMES)
def test_host_vars_carry_address_and_pod_cidr(name):
    t = topology.load(name)
    hosts = inventory.render(t)["all"]["hosts"]
    for node in t.nodes:
        assert hosts[node.name]["ansible_host"] == str(node.address)
        assert hosts[node.name]["node_address"] == str(node.address)
        assert hosts[node.name].get("pod_cidr") == (str(node.pod_cidr) if node.pod_cidr else None)


def test_cluster_vars_come_from_the_topology():
    t = topology.load("ha-external-etcd")
    v = inventory.render(t)["all"]["vars"]
    assert (v["api_endpoint_host"], v["api_endpoint_port"], v["api_virtual_ip"]) == \
        ("10.40.4.5", 8443, "10.40.4.5")
    assert v["pod_network_cidr"] == "10.244.0.0/16" and v["service_network_cidr"] == "10.96.0.0/12"
    assert v["kubernetes_version"] == t.versions["kubernetes"]
    assert v["container_runtime"] == "containerd" and v["cni_plugin"] == "bridge"


def test_security_settings_reach_the_cluster_vars_with_their_defaults():
    on = inventory.render(topology.load("single-master"))["all"]["vars"]
    assert (on["secrets_encryption"], on["audit_log"]) == (True, True)
    off = inventory.render(topology.load("all-in-one", {"security": {"audit_log_max_backups": None}}))
    assert {k: v for k, v in off["all"]["vars"].items()
            if k.startswith(("secrets_", "audit_"))} == {
        "secrets_encryption": False, "audit_log": False, "audit_log_max_age_days": 30,
        "audit_log_max_backups": 10, "audit_log_max_size_mib": 100}


def test_connection_vars_are_merged_per_host_and_for_all():
    t = topology.load("single-master")
    inv = inventory.render(t, connection={"cp-1": {"ansible_host": "127.0.0.1", "ansible_port": 2222}},
                           common={"ansible_user": "admin"})
    assert inv["all"]["hosts"]["cp-1"]["ansible_host"] == "127.0.0.1"
    assert inv["all"]["hosts"]["cp-1"]["node_address"] == "10.40.2.10"
    assert inv["all"]["vars"]["ansible_user"] == "admin"


def test_dump_is_an_inventory_ansible_reads(tmp_path):
    path = inventory.write(inventory.render(topology.load("multi-master")), tmp_path / "hosts.yml")
    assert yaml.safe_load(path.read_text())["all"]["hosts"]["cp-2"]["node_address"] == "10.40.3.12"


def test_ansible_reads_the_rendered_inventory(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    path = inventory.write(inventory.render(topology.load("ha-external-etcd")), tmp_path / "hosts.yml")
    ansible_inventory = Path(sys.executable).with_name("ansible-inventory")
    listed = json.loads(subprocess.run([str(ansible_inventory), "-i", str(path), "--list"],
                                       capture_output=True, text=True, check=True).stdout)
    assert set(listed["k8s_cluster"]["children"]) == {"kube_control_plane", "kube_node"}
    assert listed["_meta"]["hostvars"]["worker-2"]["pod_cidr"] == "10.244.17.0/24"  # 10.40.4.17
    assert sorted(listed["etcd"]["hosts"]) == ["etcd-1", "etcd-2", "etcd-3"]
