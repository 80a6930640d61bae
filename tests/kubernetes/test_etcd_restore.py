"""An etcd restore on a real cluster, single-master's shared `site` lab (issue 13 §5): a namespace
with a ConfigMap in it, a backup (etcd-backup.yml), the namespace deleted, a restore
(etcd-restore.yml: it stops the API server, restores etcd, starts the API server again and
restarts the kubelets, controller manager and scheduler, CoreDNS and kube-proxy), and the
namespace is back with its ConfigMap; the API server then serves writes and the etcd and
Kubernetes checks pass. The test leaves the cluster as it found it (the namespace goes, and the
data directory the restore kept aside)."""

from __future__ import annotations

import time

import pytest

from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]

NAMESPACE = "restore-check"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_a_namespace_deleted_after_a_backup_is_back_after_the_restore(site):
    cp = site.topology.with_role("control_plane")[0].name
    etcd = [n.name for n in site.topology.with_role("etcd")]

    def kubectl(args: str, check: bool = True) -> str:
        return site.ssh(cp, f"{KUBECTL} {args}", check=check).strip()

    def containers() -> dict[str, str]:
        """The running container of each control-plane component that the restore restarts,
        and the pods of CoreDNS and kube-proxy."""
        running = {c: site.ssh(cp, f"crictl ps --quiet --name {c}").strip()
                   for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
        for app in ("kube-dns", "kube-proxy"):
            running[app] = kubectl(f"get pods -n kube-system -l k8s-app={app} "
                                   "-o 'jsonpath={.items[*].metadata.uid}'")
        return running

    kubectl(f"create namespace {NAMESPACE}")
    kubectl(f"create configmap kept -n {NAMESPACE} --from-literal=written=before-the-backup")
    try:
        started = time.monotonic()
        backup = site.play("etcd-backup.yml", etcd_backup_label="restore-check")
        assert backup.ok, [str(f) for f in backup.failures]
        [snapshot] = site.backups.glob(f"{site.topology.name}-etcd-*-restore-check.db")
        print(f"backup: {time.monotonic() - started:.0f} s")

        kubectl(f"delete namespace {NAMESPACE} --wait --timeout 120s")
        assert "NotFound" in kubectl(f"get namespace {NAMESPACE} 2>&1", check=False)

        before = containers()
        started = time.monotonic()
        restore = site.play("etcd-restore.yml", etcd_restore_snapshot=str(snapshot))
        assert restore.ok, [str(f) for f in restore.failures]
        print(f"restore (API server stopped, etcd restored, API server ready): "
              f"{time.monotonic() - started:.0f} s")
        after = containers()
        assert [c for c in after if after[c] in ("", before[c])] == [], "each runs anew"

        assert kubectl(f"get namespace {NAMESPACE} -o 'jsonpath={{.status.phase}}'") == "Active"
        assert kubectl(f"get configmap kept -n {NAMESPACE} "
                       "-o 'jsonpath={.data.written}'") == "before-the-backup"
        kubectl(f"create configmap after-the-restore -n {NAMESPACE}")
        ready = kubectl("wait node --all --for condition=Ready --timeout 120s")
        nodes = [n for n in site.topology.nodes if n.is_kubernetes_node]
        assert ready.count("condition met") == len(nodes), ready

        verified = site.verify(["etcd", "kubernetes"])
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        kubectl(f"delete namespace {NAMESPACE} --ignore-not-found --wait --timeout 120s",
                check=False)
        for member in etcd:
            site.ssh(member, f"rm -rf /var/lib/etcd/{site.topology.name}.before-restore-*")
