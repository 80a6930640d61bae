"""The control plane on every control-plane node: static pods for the API server, controller
manager and scheduler (no etcd pod: etcd is external), their health endpoints, the API server
on the external etcd with the etcd layer's client certificate, and the admin kubeconfig."""

import re
from pathlib import Path

import pytest

from tests.layers.remote import eventually

pytestmark = pytest.mark.kubernetes

COMPONENTS = {"kube-apiserver": "https://127.0.0.1:{apiserver_port}/livez",
              "kube-controller-manager": "https://127.0.0.1:10257/healthz",
              "kube-scheduler": "https://127.0.0.1:10259/healthz"}


def apiserver_port(hostvars) -> int:
    return 6443 if hostvars.get("api_virtual_ip") else hostvars["api_endpoint_port"]


def test_static_pods_are_the_control_plane_without_etcd(host, control_plane):
    manifests = host.file("/etc/kubernetes/manifests")
    assert sorted(manifests.listdir()) == sorted(f"{c}.yaml" for c in COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_answer_their_health_checks(host, control_plane, component):
    """Asked again for a minute: a controller manager or scheduler that lost its leader lease
    to a slow etcd restarts, and the API server's etcd check fails while etcd is slow."""
    url = COMPONENTS[component].format(apiserver_port=apiserver_port(control_plane))
    health = eventually(lambda: host.run(f"curl -sSk --max-time 5 {url}"),
                        succeeded=lambda r: r.rc == 0 and r.stdout == "ok")
    assert health.rc == 0 and health.stdout == "ok", f"{url}: {health.stdout}{health.stderr}"


def test_the_api_server_uses_the_external_etcd_with_the_etcd_layers_certificate(
        host, control_plane, inventory):
    manifest = host.file("/etc/kubernetes/manifests/kube-apiserver.yaml").content_string
    members = re.search(r"--etcd-servers=(\S+)", manifest).group(1).split(",")
    assert sorted(members) == sorted(f"https://{inventory.get_variables(m)['node_address']}:2379"
                                     for m in inventory.get_hosts("etcd"))
    assert "--etcd-certfile=/etc/etcd/pki/apiserver-etcd-client.crt" in manifest
    assert "--etcd-keyfile=/etc/etcd/pki/apiserver-etcd-client.key" in manifest
    assert "--etcd-cafile=/etc/etcd/pki/ca.crt" in manifest


def test_the_node_is_ready_and_the_api_is_ready(host, control_plane):
    kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
    readyz = eventually(lambda: host.run(f"{kubectl} get --raw '/readyz?verbose'"))
    assert readyz.rc == 0, readyz.stdout + readyz.stderr
    ready = eventually(lambda: host.run(
        f"{kubectl} get node {control_plane['inventory_hostname']} -o "
        "jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'"))
    assert ready.rc == 0 and ready.stdout == "True", ready.stdout + ready.stderr


def test_the_admin_kubeconfig_is_for_root_only(host, control_plane, request):
    config = host.file("/etc/kubernetes/admin.conf")
    assert (config.user, config.mode) == ("root", 0o600)
    controller_copy = Path(request.config.option.ansible_inventory).parent / "admin.conf"
    assert controller_copy.stat().st_mode & 0o777 == 0o600
