"""The Secrets encryption keys as the controller keeps them and the steps of a rotation on them
(roles/kubeadm/filter_plugins/secrets_encryption.py), the EncryptionConfiguration and audit
policy the API servers get, and that no task of the kubeadm role that handles a key logs it."""

from __future__ import annotations

import importlib.util

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml

from tests.kubernetes.conftest import ROLES

spec = importlib.util.spec_from_file_location(
    "secrets_encryption", ROLES / "kubeadm" / "filter_plugins" / "secrets_encryption.py")
keys = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keys)

EMPTY = {"write": "identity", "keys": [], "retired": []}
A = {"name": "key-a", "secret": "YQ=="}
B = {"name": "key-b", "secret": "Yg=="}
ON_A = {"write": "key-a", "keys": [A], "retired": []}


def steps(state: dict, names: list[str], target: str) -> dict:
    return keys.kubeadm_encryption_steps(state, names, target, B["secret"])


def providers(state: dict) -> list[dict]:
    return keys.kubeadm_encryption_providers(state, "secretbox")


def test_a_new_cluster_encrypts_with_its_first_key_at_once():
    state = steps(EMPTY, ["read", "write", "retire"], "key-b")
    assert state == {"write": "key-b", "keys": [B], "retired": []}
    assert providers(state) == [{"secretbox": {"keys": [B]}}, {"identity": {}}]


def test_a_rotation_adds_the_key_second_then_first_then_retires_the_old_one():
    read = steps(ON_A, ["read"], "key-b")
    assert providers(read) == [{"secretbox": {"keys": [A, B]}}, {"identity": {}}]
    write = steps(read, ["write"], "key-b")
    assert providers(write) == [{"secretbox": {"keys": [B, A]}}, {"identity": {}}]
    retired = steps(write, ["retire"], "key-b")
    assert retired == {"write": "key-b", "keys": [B], "retired": [A]}
    # each step taken again changes nothing
    for state, step in ((read, "read"), (write, "write"), (retired, "retire")):
        assert steps(state, [step], "key-b") == state


def test_turning_encryption_on_in_a_running_cluster_reads_before_it_writes():
    read = steps(EMPTY, ["read"], "key-b")
    assert providers(read) == [{"identity": {}}, {"secretbox": {"keys": [B]}}]
    assert providers(steps(read, ["write"], "key-b"))[0] == {"secretbox": {"keys": [B]}}


def test_turning_encryption_off_decrypts_first_then_drops_the_keys():
    assert steps(ON_A, ["read"], "identity") == ON_A
    write = steps(ON_A, ["write"], "identity")
    assert providers(write) == [{"identity": {}}, {"secretbox": {"keys": [A]}}]
    off = steps(write, ["retire"], "identity")
    assert off == {"write": "identity", "keys": [], "retired": [A]} and providers(off) == []


@pytest.mark.parametrize("state,names,target,problem", [
    ({"write": "key-b", "keys": [B], "retired": [A]}, ["read"], "key-a", "was used before"),
    (ON_A, ["write"], "key-b", "cannot encrypt before the API servers hold it"),
    (ON_A, ["rotate"], "key-b", "unknown step"),
])
def test_impossible_steps_are_refused(state, names, target, problem):
    with pytest.raises(AnsibleFilterError, match=problem):
        steps(state, names, target)


def render(template: str, **variables) -> dict:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLES / "kubeadm" / "templates"),
                                     undefined=jinja2.StrictUndefined)
    environment.filters.update(to_nice_yaml=to_nice_yaml,
                               kubeadm_encryption_providers=keys.kubeadm_encryption_providers)
    return yaml.safe_load(environment.get_template(template).render(ansible_managed="managed",
                                                                    **variables))


def test_the_encryption_configuration_encrypts_secrets_with_the_keys():
    config = render("encryption-config.yaml.j2", kubeadm_encryption_provider="secretbox",
                    kubeadm_encryption_state=steps(ON_A, ["read"], "key-b"))
    assert config == {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                      "resources": [{"resources": ["secrets"], "providers": [
                          {"secretbox": {"keys": [A, B]}}, {"identity": {}}]}]}


def test_the_audit_policy_logs_metadata_only_and_skips_read_only_system_traffic():
    policy = render("audit-policy.yaml.j2")
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    levels = {rule["level"] for rule in policy["rules"]}
    assert levels == {"None", "Metadata"}, "no rule may log a request's or answer's body"
    assert policy["rules"][-1] == {"level": "Metadata"}
    nodes = next(r for r in policy["rules"] if "system:nodes" in r.get("userGroups", []))
    assert (nodes["level"], nodes["verbs"]) == ("None", ["get", "list", "watch"])


def _tasks(entries: list) -> list[dict]:
    for task in entries or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def test_every_task_that_handles_a_key_keeps_it_out_of_the_logs():
    handling = []
    for path in sorted((ROLES / "kubeadm" / "tasks").glob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            text = yaml.safe_dump({k: v for k, v in task.items() if k != "name"})
            if any(word in text for word in ("encryption-config.yaml.j2", "kubeadm_encryption_next",
                                             "secrets-encryption-keys.yaml.j2", "/dev/urandom")):
                handling.append((path.name, task["name"], task.get("no_log")))
    assert len(handling) >= 2 and all(no_log for *_, no_log in handling), handling
