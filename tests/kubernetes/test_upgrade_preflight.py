"""upgrade.yml's preflight: versions the version-skew policy forbids are refused before
anything changes, allowed ones pass. The rules themselves (a filter plugin of the kube role)
are tested directly; two runs of the role show they are what the playbook applies."""

from __future__ import annotations

import importlib.util

import pytest

from tests.harness import ansible_playbook
from tests.kubernetes.conftest import HERE, ROLES, local_inventory

spec = importlib.util.spec_from_file_location(
    "kube_versions", ROLES / "kube" / "filter_plugins" / "kube_versions.py")
kube_versions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kube_versions)

ETCD_MINIMUMS = {"3.4": "3.4.29", "3.5": "3.5.11"}
NODES = {"cp-1": "v1.31.4", "worker-1": "v1.31.4"}


@pytest.mark.parametrize("target, servers, kubelets", [
    ("1.31.5", ["v1.31.4"], NODES),                             # a patch release
    ("1.32.0", ["v1.31.4", "v1.31.4"], NODES),                  # the next minor
    ("1.31.4", ["v1.31.4"], NODES),                             # nothing to do: allowed
    ("1.32.1", ["v1.32.0", "v1.31.4"], NODES),                  # finishing a half-done minor
    ("1.32.0", ["v1.31.4"], {"old": "v1.29.9", **NODES}),       # kubelet 3 minors behind
    # resumed: the first control plane and its kubelet done, the second API server not yet
    ("1.32.0", ["v1.32.0", "v1.31.4"], {"cp-1": "v1.32.0", "cp-2": "v1.31.4"}),
])
def test_allowed_upgrades_pass(target, servers, kubelets):
    assert kube_versions.kube_upgrade_problems(target, servers, kubelets) == []


@pytest.mark.parametrize("target, servers, kubelets, problem", [
    ("1.33.0", ["v1.31.4"], NODES, "skips a minor version"),
    ("2.0.0", ["v1.31.4"], NODES, "skips a minor version"),
    ("1.31.3", ["v1.31.4"], NODES, "does not support downgrades"),
    ("1.32.0", ["v1.32.1", "v1.31.4"], NODES, "does not support downgrades"),
    ("1.32.0", ["v1.31.4"], {"worker-1": "v1.32.0"}, "newer than the API server"),
    ("1.32.0", ["v1.32.0", "v1.31.4"], {"cp-1": "v1.32.1"}, "newer than the API server"),
    ("1.32.1", ["v1.32.0"], {"cp-1": "v1.32.1"}, "newer than the API server"),
    ("1.32.0", ["v1.31.4"], {"worker-1": "v1.28.15"}, "more than 3 minor versions older"),
    ("1.32", ["v1.31.4"], NODES, "not MAJOR.MINOR.PATCH"),
    ("1.32.0", [], NODES, "cannot read the running API server"),
])
def test_forbidden_upgrades_are_refused(target, servers, kubelets, problem):
    problems = kube_versions.kube_upgrade_problems(target, servers, kubelets)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("etcd, ok", [("3.4.23", False), ("3.4.29", True), ("3.5.10", False),
                                      ("3.5.16", True), ("3.6.0", True), ("3.3.27", False)])
def test_etcd_must_be_new_enough_for_kubernetes(etcd, ok):
    assert (kube_versions.kube_etcd_problems(etcd, ETCD_MINIMUMS) == []) is ok


def run_preflight(tmp_path, target, etcd, servers, kubelets):
    inventory = local_inventory("single-master", tmp_path)
    return ansible_playbook(HERE / "upgrade_preflight.yml", inventory, {
        "kubernetes_version": target, "etcd_version": etcd,
        "upgrade_preflight_apiserver_versions": servers,
        "upgrade_preflight_kubelet_versions": kubelets})


def test_the_playbook_refuses_a_forbidden_upgrade_and_names_why(tmp_path):
    result = run_preflight(tmp_path, "1.33.2", "3.4.23", ["v1.31.4"],
                           {"cp-1": "v1.31.4", "worker-1": "v1.32.0"})
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    assert "Cannot upgrade to Kubernetes 1.33.2" in output
    for problem in ("skips a minor version", "is newer than the API server", "etcd 3.4.23 is older",
                    "Nothing was changed"):
        assert problem in output, output[-2000:]


def test_the_playbook_lets_an_allowed_upgrade_through(tmp_path):
    result = run_preflight(tmp_path, "1.32.0", "3.5.16", ["v1.31.4"], NODES)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "v1.31.4 -> 1.32.0 is allowed" in " ".join(result.stdout.split())
