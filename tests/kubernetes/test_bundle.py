"""`kubestrata bundle`: what it plans for a topology, and that it stops, naming the address and
writing nothing, when the repository or registry do not answer. Building a real bundle needs
pkgs.k8s.io and registry.k8s.io, which this machine cannot reach; every address here is a
server on 127.0.0.1 that the test runs."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
import yaml

from kubestrata import bundle, topology
from kubestrata.cli import main
from tests.kubernetes.conftest import ROLES, role_defaults

# `kubeadm config images list --kubernetes-version v1.31.4`, as kubeadm 1.31.4 prints it.
KUBEADM_1_31_4 = """\
registry.k8s.io/kube-apiserver:v1.31.4
registry.k8s.io/kube-controller-manager:v1.31.4
registry.k8s.io/kube-scheduler:v1.31.4
registry.k8s.io/kube-proxy:v1.31.4
registry.k8s.io/coredns/coredns:v1.11.3
registry.k8s.io/pause:3.10
registry.k8s.io/etcd:3.5.15-0
"""


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests go straight to 127.0.0.1, never through a proxy the environment may name."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    """A local HTTP server answering each path with the status the test sets (404 otherwise)."""
    statuses: dict[str, int] = {}
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.statuses, httpd.asked = statuses, asked
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_bundle_holds_the_topologys_version_from_its_minor_repository():
    p = bundle.plan(topology.load("ha-external-etcd"))
    assert p.kubernetes_version == "1.36.3" and p.arch == "amd64"
    assert p.repo_url == "https://pkgs.k8s.io/core:/stable:/v1.36/deb/"
    assert p.key_url == "https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key"
    assert p.packages == ("kubelet", "kubeadm", "kubectl")
    assert p.packages == tuple(role_defaults("kube_packages")["kube_packages_names"])
    assert p.images == () and p.manifests == {}             # bridge: nothing more
    newer = bundle.plan(topology.load("all-in-one", {"versions": {"kubernetes": "1.32.1"}}),
                        arch="arm64", repo_base="http://mirror.example/k8s/")
    assert newer.repo_url == "http://mirror.example/k8s/v1.32/deb/" and newer.arch == "arm64"


def test_the_control_plane_images_are_kubeadms_list_without_etcd():
    assert bundle.control_plane_images(KUBEADM_1_31_4) == [
        "registry.k8s.io/kube-apiserver:v1.31.4", "registry.k8s.io/kube-controller-manager:v1.31.4",
        "registry.k8s.io/kube-scheduler:v1.31.4", "registry.k8s.io/kube-proxy:v1.31.4",
        "registry.k8s.io/coredns/coredns:v1.11.3", "registry.k8s.io/pause:3.10"]


def test_flannel_images_are_the_ones_the_cni_role_deploys():
    p = bundle.plan(topology.load("single-master", {"cni": "flannel"}))
    cni = role_defaults("cni")
    assert p.images == (f"docker.io/flannel/flannel:{cni['cni_flannel_version']}",
                        f"docker.io/flannel/flannel-cni-plugin:{cni['cni_flannel_cni_plugin_version']}")
    template = (ROLES / "cni" / "templates" / "flannel.yml.j2").read_text()
    assert "image: docker.io/flannel/flannel:{{ cni_flannel_version }}" in template
    assert "image: docker.io/flannel/flannel-cni-plugin:{{ cni_flannel_cni_plugin_version }}" in template


def test_calico_brings_the_operator_manifest_the_pod_network_role_applies():
    p = bundle.plan(topology.load("single-master", {"cni": "calico"}))
    version = role_defaults("cluster_defaults")["cni_calico_version"]
    url = f"https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/tigera-operator.yaml"
    assert p.manifests == {"tigera-operator.yaml": url}
    assert all(image.endswith(f":{version}") for image in p.images)
    pod_network = yaml.safe_load((ROLES / "pod_network" / "vars" / "main.yml").read_text())
    assert "'manifests/tigera-operator.yaml'" in pod_network["pod_network_calico_operator_url"]
    assert "else cni_calico_operator_url" in pod_network["pod_network_calico_operator_url"]
    operator = ("spec:\n  containers:\n    - name: tigera-operator\n"
                "      image: quay.io/tigera/operator:v1.34.5\n")
    assert bundle.manifest_images(operator) == ["quay.io/tigera/operator:v1.34.5"]


def test_an_unanswering_repository_stops_the_bundle_naming_the_address(server, tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(["bundle", "all-in-one", "-o", str(out),
                 "--repo-base", f"{server.url}/core:/stable:"])
    error = capsys.readouterr().err
    assert code == 1
    assert f"{server.url}/core:/stable:/v1.36/deb/InRelease answered HTTP 404" in error
    assert "nothing was written" in error
    assert not out.exists() and not list(tmp_path.iterdir())
    assert server.asked == ["/core:/stable:/v1.36/deb/InRelease"]     # nothing after that


def test_a_closed_port_stops_the_bundle_too(tmp_path, capsys):
    with socket.socket() as probe:                    # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["bundle", "all-in-one", "-o", str(tmp_path / "b"),
                 "--repo-base", f"http://127.0.0.1:{port}/k8s"])
    error = capsys.readouterr().err
    assert code == 1 and f"cannot reach http://127.0.0.1:{port}/k8s/v1.36/deb/InRelease" in error
    assert "Connection refused" in error and not (tmp_path / "b").exists()


def test_the_registry_must_answer_as_well(server):
    server.statuses["/k8s/v1.36/deb/InRelease"] = 200
    p = bundle.plan(topology.load("all-in-one"), repo_base=f"{server.url}/k8s",
                    registry_url=f"{server.url}/registry")
    with pytest.raises(bundle.BundleError, match=r"/registry/v2/ answered HTTP 404"):
        bundle.check_reachable(p)
    server.statuses["/registry/v2/"] = 401            # a registry without a token
    bundle.check_reachable(p)
    assert server.asked == ["/k8s/v1.36/deb/InRelease", "/registry/v2/"] * 2
