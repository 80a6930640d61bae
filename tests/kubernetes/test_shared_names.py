"""Names several layers share live in one role, roles/cluster_defaults, which those layers
depend on; the files they name must be the ones the layers write."""

from __future__ import annotations

import pytest
import yaml

from tests.kubernetes.conftest import ROLES, role_defaults


def test_the_etcd_layer_writes_the_api_servers_client_files_on_the_control_planes():
    tasks = yaml.safe_load((ROLES / "etcd" / "tasks" / "apiserver_client.yml").read_text())
    written = set()
    for task in tasks:
        copy = task.get("ansible.builtin.copy", {})
        items = task.get("loop", [])
        written |= {copy.get("dest")} | {i["dest"] for i in items if isinstance(i, dict)}
    assert {"{{ etcd_ca_file }}", "{{ etcd_apiserver_client_cert }}",
            "{{ etcd_apiserver_client_key }}"} <= written
    etcd_playbook = yaml.safe_load((ROLES.parent / "playbooks" / "etcd.yml").read_text())
    assert any(play["hosts"] == "kube_control_plane" and "apiserver_client" in str(play)
               for play in etcd_playbook)


def test_the_pod_network_applies_the_manifests_where_the_cni_role_renders_them():
    addon = (ROLES / "cni" / "tasks" / "addon.yml").read_text()
    assert 'dest: "{{ cni_manifest_dir }}/{{ cni_plugin }}.yml"' in addon
    pod_network = yaml.safe_load((ROLES / "pod_network" / "vars" / "main.yml").read_text())
    assert pod_network["pod_network_manifest"] == "{{ cni_manifest_dir }}/{{ cni_plugin }}.yml"


@pytest.mark.parametrize("role", ["etcd", "ha_endpoint", "cni", "kube"])
def test_the_layers_read_their_shared_names_from_one_role(role):
    meta = yaml.safe_load((ROLES / role / "meta" / "main.yml").read_text())
    assert {"role": "cluster_defaults"} in meta["dependencies"]
    shared = set(role_defaults("cluster_defaults"))
    assert shared.isdisjoint(role_defaults(role)), f"{role} keeps a copy of a shared name"


def test_the_kubelet_reads_the_fact_both_runtimes_publish():
    kube_vars = yaml.safe_load((ROLES / "kube" / "vars" / "main.yml").read_text())
    for key in ("cri_socket", "cgroup_driver"):
        assert f"ansible_local.kubestrata_runtime.{key}" in kube_vars[f"kube_{key}"]
        for runtime in ("containerd", "cri_o"):
            tasks = (ROLES / runtime / "tasks" / "main.yml").read_text()
            assert "kubestrata_runtime.fact" in tasks and f"'{key}'" in tasks, runtime
