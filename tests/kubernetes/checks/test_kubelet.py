"""kubelet on every Kubernetes node: pinned and held, running, healthy, on the runtime's
cgroup driver and CRI socket, and its node Ready in the cluster."""

import json

import pytest
import yaml

pytestmark = pytest.mark.kubernetes


def test_packages_are_pinned_and_held(host, k8s_node):
    for name in ("kubelet", "kubeadm", "kubectl"):
        package = host.package(name)
        assert package.is_installed and package.version.startswith(k8s_node["kubernetes_version"] + "-")
        assert host.check_output(f"dpkg-query -W -f '${{Status}}' {name}").startswith("hold ")


def test_kubelet_runs_and_answers_its_health_check(host, k8s_node):
    kubelet = host.service("kubelet")
    assert kubelet.is_running and kubelet.is_enabled
    assert host.check_output("curl -sS --max-time 5 http://127.0.0.1:10248/healthz") == "ok"


def test_kubelet_uses_the_runtimes_cgroup_driver_and_socket(host, k8s_node):
    fact = json.loads(host.file("/etc/ansible/facts.d/kubestrata_runtime.fact").content_string)
    config = yaml.safe_load(host.file("/var/lib/kubelet/config.yaml").content_string)
    assert config["cgroupDriver"] == fact["cgroup_driver"]
    assert config["containerRuntimeEndpoint"] == fact["cri_socket"]
    flags = host.file("/var/lib/kubelet/kubeadm-flags.env").content_string
    assert f"--node-ip={k8s_node['node_address']}" in flags


def test_no_join_token_is_left_on_the_node(host, k8s_node):
    assert not host.file("/etc/kubernetes/kubeadm-join.yaml").exists


def test_the_offline_bundles_images_stay_on_the_node(host, k8s_node):
    """With the offline install source nothing can pull an image again: every image the node may
    run (kubeadm's list, less etcd, which runs outside Kubernetes here, and on workers less the
    control plane's own) stays in its runtime; the kubelet must not garbage-collect them."""
    if k8s_node.get("kube_install_source") != "offline":
        pytest.skip("images come from a registry: the kubelet pulls what it lacks")
    listed = host.check_output(f"kubeadm config images list --kubernetes-version "
                               f"v{k8s_node['kubernetes_version']}").split()
    needed = {i for i in listed if "/etcd:" not in i}
    if "kube_control_plane" not in k8s_node["group_names"]:
        needed = {i for i in needed
                  if not any(f"/kube-{c}:" in i for c in ("apiserver", "controller-manager", "scheduler"))}
    socket = json.loads(host.file("/etc/ansible/facts.d/kubestrata_runtime.fact").content_string)["cri_socket"]
    images = json.loads(host.check_output(f"crictl --runtime-endpoint {socket} images -o json"))["images"]
    present = {tag for image in images for tag in image.get("repoTags") or []}
    assert sorted(needed - present) == []
