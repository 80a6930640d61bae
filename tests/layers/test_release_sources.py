"""The sources users can pick but these tests cannot download from (no route out): what the
roles would fetch, checked up to the download. containerd and runc's official releases (URL and
sha256 for a version), CRI-O's upstream package repository, and the flannel and calico manifests
the Kubernetes layer will apply. Runs Ansible on localhost; nothing leaves the machine."""

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata.paths import PROJECT_ROOT
from tests.harness import ansible_playbook

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="the expected checksums are amd64's")


def run_on_localhost(tmp_path: Path, tasks: list, **extravars) -> subprocess.CompletedProcess:
    play = [{"name": "Plan", "hosts": "localhost", "connection": "local", "gather_facts": True,
             "gather_subset": ["!all"], "tasks": tasks}]
    (tmp_path / "plan.yml").write_text(yaml.safe_dump(play))
    return ansible_playbook(tmp_path / "plan.yml", "localhost,", {
        "out": str(tmp_path / "out.json"), "ansible_python_interpreter": sys.executable,
        **extravars})


def plan(tmp_path: Path, role: str, entry: str, fact: str, **extravars) -> dict:
    result = run_on_localhost(tmp_path, [
        {"ansible.builtin.include_role": {"name": role, "tasks_from": entry}},
        {"ansible.builtin.copy": {"content": f"{{{{ {fact} | to_json }}}}", "dest": "{{ out }}",
                                  "mode": "0600"}},
    ], **extravars)
    assert result.returncode == 0, result.stdout[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


# The role ships no release sum yet (none could be checked here): the tests give their own.
CHECKSUMS = {"containerd_release_checksums": {"amd64": {"2.1.9": "c0" * 32}},
             "containerd_runc_release_checksums": {"amd64": {"1.3.6": "a1" * 32}}}


def test_containerd_release_urls_and_checksums_for_a_version(tmp_path):
    downloads = plan(tmp_path, "containerd", "release_plan", "containerd_release_downloads",
                     containerd_version="2.1.9", runc_version="1.3.6", **CHECKSUMS)
    assert downloads == {
        "containerd": {
            "url": "https://github.com/containerd/containerd/releases/download/v2.1.9/"
                   "containerd-2.1.9-linux-amd64.tar.gz",
            "checksum": "sha256:" + "c0" * 32},
        "runc": {
            "url": "https://github.com/opencontainers/runc/releases/download/v1.3.6/runc.amd64",
            "checksum": "sha256:" + "a1" * 32},
    }


def test_a_release_without_a_known_checksum_is_refused_before_any_download(tmp_path):
    result = run_on_localhost(tmp_path, [
        {"ansible.builtin.include_role": {"name": "containerd", "tasks_from": "release_plan"}},
    ], containerd_version="2.1.99", runc_version="1.3.6", **CHECKSUMS)
    assert result.returncode != 0
    assert "No checksum for containerd 2.1.99 and runc 1.3.6 on amd64" in result.stdout
    assert "known: containerd 2.1.9; runc 1.3.6" in result.stdout   # the versions it knows


def test_cri_o_repository_follows_the_kubernetes_minor_version(tmp_path):
    repository = plan(tmp_path, "cri_o", "repository_plan", "cri_o_repository",
                      kubernetes_version="1.36.3")
    base = "https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.36/deb/"
    assert repository == {"url": base, "key_url": base + "Release.key", "package": "cri-o=1.36.*"}


@pytest.mark.parametrize("addon", ["flannel", "calico"])
def test_addon_manifests_render_for_the_pod_network(tmp_path, addon):
    manifest = tmp_path / f"{addon}.yml"
    result = run_on_localhost(tmp_path, [
        {"ansible.builtin.include_vars": {"file": str(PROJECT_ROOT / f"roles/{path}/main.yml")}}
        for path in ("cluster_defaults/defaults", "cni/defaults", "cni/vars")
    ] + [{"ansible.builtin.template": {"src": str(PROJECT_ROOT / f"roles/cni/templates/{addon}.yml.j2"),
                                       "dest": str(manifest), "mode": "0600"}}],
        cluster_name="t", pod_network_cidr="10.200.0.0/16", pod_node_prefix=24)
    assert result.returncode == 0, result.stdout[-3000:]
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    kinds = [d["kind"] for d in documents]
    if addon == "flannel":
        assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                         "ConfigMap", "DaemonSet"]
        config = documents[4]["data"]
        assert json.loads(config["net-conf.json"])["Network"] == "10.200.0.0/16"
        assert json.loads(config["cni-conf.json"])["plugins"][0]["type"] == "flannel"
        images = [c["image"] for c in documents[5]["spec"]["template"]["spec"]["initContainers"]
                  + documents[5]["spec"]["template"]["spec"]["containers"]]
        assert all(":" in image and not image.endswith(":latest") for image in images)
    else:
        assert kinds == ["Installation", "APIServer"]
        [pool] = documents[0]["spec"]["calicoNetwork"]["ipPools"]
        assert pool["cidr"] == "10.200.0.0/16"
