"""runtime: containerd and runc at the pinned versions, the CRI plugin healthy and answering."""

import json
import re

import pytest

from kubestrata.cri.client import RuntimeClient
from tests.layers import remote
from tests.layers.checks.conftest import cri_socket

pytestmark = pytest.mark.runtime


@pytest.fixture
def containerd_node(k8s_node):
    if k8s_node.get("container_runtime", "containerd") != "containerd":
        pytest.skip("the node runs another container runtime")
    return k8s_node


def test_containerd_is_active_and_enabled(host, containerd_node):
    containerd = host.service("containerd")
    assert containerd.is_running and containerd.is_enabled
    assert host.file("/run/containerd/containerd.sock").is_socket


def test_cri_plugin_is_healthy(host, containerd_node):
    plugins = host.check_output("ctr plugins ls")
    assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok", plugins), plugins


def test_versions_are_the_pinned_ones(host, containerd_node):
    assert f" {containerd_node['containerd_version']}" in host.check_output("containerd --version")
    assert host.check_output("runc --version").splitlines()[0] \
        .startswith(f"runc version {containerd_node['runc_version']}")


def test_config_matches_the_published_cgroup_driver(host, containerd_node):
    config = host.file("/etc/containerd/config.toml")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o644)
    fact = json.loads(host.file("/etc/ansible/facts.d/kubestrata_runtime.fact").content_string)
    assert fact["cri_socket"] == "unix:///run/containerd/containerd.sock"
    systemd = "true" if fact["cgroup_driver"] == "systemd" else "false"
    assert re.search(rf"SystemdCgroup = {systemd}\b", config.content_string)


def test_oom_score_adjustment_is_restricted_exactly_in_a_container(host, containerd_node):
    in_container = host.run("systemd-detect-virt --container").rc == 0
    config = host.file("/etc/containerd/config.toml").content_string
    assert f"restrict_oom_score_adj = {str(in_container).lower()}" in config


def test_the_cri_answers_and_the_runtime_is_ready(containerd_node):
    with remote.forwarded_socket(containerd_node, cri_socket(containerd_node)) as socket, \
            RuntimeClient(socket) as cri:
        version = cri.version()
        assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
        assert cri.conditions()["RuntimeReady"]
