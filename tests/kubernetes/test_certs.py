"""Certificates on single-master's shared lab: kubeadm issues the control plane's certificates
for two days, on purpose; `kubestrata certs` lists every certificate of every node (kubeadm's,
the kubeconfigs', the kubelet's, etcd's) and exits 1 naming the ones that expire within 30
days; the Kubernetes layer renews them, one control plane at a time, and the API server serves
the new one; `kubestrata certs` is then content."""

from __future__ import annotations

import shlex
import subprocess
from datetime import datetime, timezone

import pytest
import yaml
from cryptography import x509

from tests.harness import VENV_BIN, needs_root

pytestmark = [pytest.mark.lab, needs_root]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def certs(site) -> tuple[int, dict[tuple[str, str], int], str]:
    """`kubestrata certs`: its exit code, (node, path) -> days left, and its output."""
    listed = subprocess.run([str(VENV_BIN / "kubestrata"), "certs", str(site.topology.source)],
                            capture_output=True, text=True, timeout=300, cwd=site.work)
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    days = {(row[0], row[1]): int(row[-1]) for row in rows
            if len(row) >= 5 and row[-1].lstrip("-").isdigit()}
    return listed.returncode, days, listed.stdout + listed.stderr


def served_days(site) -> int:
    """Days left of the certificate the API server on cp-1 serves."""
    address = site.topology.node("cp-1").address
    served = site.ssh("cp-1", "python3 -c 'import ssl; print(ssl.get_server_certificate("
                              f"(\"{address}\", 6443)))'")
    certificate = x509.load_pem_x509_certificate(served.encode())
    return (certificate.not_valid_after_utc - datetime.now(timezone.utc)).days


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_short_lived_certificates_are_listed_then_renewed_by_the_layer(site):
    code, days, output = certs(site)
    assert code == 0, output
    assert {node for node, _ in days} == {"cp-1", "worker-1", "worker-2"}, output
    for path in ["/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/admin.conf",
                 "/etc/etcd/pki/server.crt", "/var/lib/kubelet/pki/kubelet-client-current.pem"]:
        assert days[("cp-1", path)] >= 300, output
    assert ("worker-1", "/var/lib/kubelet/pki/kubelet-client-current.pem") in days, output

    cluster_config = yaml.safe_load(site.ssh("cp-1", f"{KUBECTL} get configmap -n kube-system "
                                             "kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'"))
    short = yaml.safe_dump({**cluster_config, "certificateValidityPeriod": "48h0m0s"})
    site.ssh("cp-1", f"printf %s {shlex.quote(short)} > /root/short-lived.yaml && "
                     "kubeadm certs renew all --config /root/short-lived.yaml >/dev/null && "
                     "rm /root/short-lived.yaml")
    code, days, output = certs(site)
    assert code == 1, output
    assert days[("cp-1", "/etc/kubernetes/pki/apiserver.crt")] <= 2, output
    assert days[("cp-1", "/etc/kubernetes/admin.conf")] <= 2, output
    assert "expire within 30 days: `kubestrata up " in output, output

    result = site.play("site.yml", tags=["kubernetes"])
    assert result.ok, result.failures
    renewed = [task for layer in result.layers for host, task in layer.changed_tasks
               if task.startswith("Renew them")]
    assert len(renewed) == 1, renewed
    code, days, output = certs(site)
    assert code == 0, output
    assert days[("cp-1", "/etc/kubernetes/pki/apiserver.crt")] >= 300, output
    assert served_days(site) >= 300
    assert site.verify(["kubernetes"]).returncode == 0
