"""The security extras on every control plane, when the topology turns them on: the API server
encrypts Secrets with the key its encryption configuration names first (read back raw from etcd),
and its audit log records requests, a Secret's without its contents; their files are root's."""

from __future__ import annotations

import json
import secrets
import shlex

import pytest
import yaml

from tests.layers import remote
from tests.layers.remote import eventually

pytestmark = pytest.mark.kubernetes

ENCRYPTION_CONFIG = "/etc/kubernetes/encryption/config.yaml"
AUDIT_POLICY = "/etc/kubernetes/audit/policy.yaml"
AUDIT_LOG = "/var/log/kubernetes/audit/audit.log"
MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"


def turned_on(control_plane: dict, setting: str) -> None:
    if not control_plane.get(setting):
        pytest.skip(f"security.{setting} is off in the topology")


def api_server_kubectl(control_plane: dict) -> str:
    """kubectl as admin, talking to this control plane's own API server."""
    port = 6443 if control_plane.get("api_virtual_ip") else control_plane["api_endpoint_port"]
    return (f"kubectl --kubeconfig /etc/kubernetes/admin.conf "
            f"--server https://{control_plane['node_address']}:{port}")


@pytest.fixture
def secrets_encryption(control_plane):
    turned_on(control_plane, "secrets_encryption")


@pytest.fixture
def audit_log(control_plane):
    turned_on(control_plane, "audit_log")


@pytest.fixture
def written_secret(host, control_plane):
    """A Secret written through this control plane's API server: its name and its value (a
    random one, which may appear nowhere else); deleted after the check."""
    name = f"kubestrata-check-{control_plane['inventory_hostname']}-{secrets.token_hex(3)}"
    value = secrets.token_hex(16)
    kubectl = api_server_kubectl(control_plane)
    ready = eventually(lambda: host.run(f"{kubectl} get --raw '/readyz?verbose'"))
    assert ready.rc == 0, ready.stdout + ready.stderr
    host.check_output(f"{kubectl} create secret generic {name} --namespace default "
                      f"--from-literal=check={value}")
    yield name, value
    host.run(f"{kubectl} delete secret {name} --namespace default --ignore-not-found")


def test_the_encryption_configuration_is_roots_and_the_running_api_server_reads_it(
        host, control_plane, secrets_encryption):
    config = host.file(ENCRYPTION_CONFIG)
    assert (config.exists, config.user, config.group, config.mode) == (True, "root", "root", 0o600)
    flag = f"--encryption-provider-config={ENCRYPTION_CONFIG}"
    assert flag in host.file(MANIFEST).content_string
    running = host.check_output("pgrep --list-full --exact kube-apiserver")
    assert flag in running.split(), "the running API server was started without it"


def test_a_secret_is_stored_encrypted_in_etcd_with_the_key_that_encrypts(
        host, control_plane, inventory, secrets_encryption, written_secret):
    name, value = written_secret
    providers = yaml.safe_load(host.file(ENCRYPTION_CONFIG).content_string)["resources"][0]["providers"]
    [(provider, settings)] = providers[0].items()
    assert provider != "identity", "the configuration's first provider stores Secrets in plain text"
    prefix = f"k8s:enc:{provider}:v1:{settings['keys'][0]['name']}:".encode()
    member = inventory.get_variables(inventory.get_hosts("etcd")[0])
    stored = remote.run(member, "set -a; . /etc/etcd/etcdctl.env; set +a; etcdctl get "
                                f"{shlex.quote(f'/registry/secrets/default/{name}')} --print-value-only")
    assert stored.returncode == 0, stored.stderr.decode(errors="replace")
    assert stored.stdout.startswith(prefix), f"etcd holds it as {stored.stdout[:30]!r}, not under {prefix!r}"
    assert value.encode() not in stored.stdout


def test_the_audit_log_records_requests_without_secret_contents(host, control_plane, audit_log,
                                                                written_secret):
    policy = host.file(AUDIT_POLICY)
    assert (policy.exists, policy.user, policy.mode) == (True, "root", 0o600)
    manifest = host.file(MANIFEST).content_string
    for flag, setting in (("maxage", "audit_log_max_age_days"), ("maxbackup", "audit_log_max_backups"),
                          ("maxsize", "audit_log_max_size_mib")):
        assert f"--audit-log-{flag}={control_plane[setting]}" in manifest
    name, value = written_secret
    found = host.run(f"grep --fixed-strings --no-filename {shlex.quote(name)} {AUDIT_LOG}*")
    events = [json.loads(line) for line in found.stdout.splitlines()]
    created = [e for e in events if e["verb"] == "create" and e["objectRef"].get("name") == name]
    assert created, f"{AUDIT_LOG} has no event of the Secret's creation"
    assert created[0]["level"] == "Metadata" and created[0]["user"]["username"] == "kubernetes-admin"
    assert value not in found.stdout, "the audit log holds the Secret's contents"
