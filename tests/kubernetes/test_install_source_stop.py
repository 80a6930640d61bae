"""The Kubernetes layer's install-source check: a node that cannot reach the source stops the
layer before anything changes, with a message that names the source, the address tried and the
offline option. Lab nodes have no route out, so the upstream source (pkgs.k8s.io) shows it.

It runs on the shared all-in-one lab of tests/conftest.py (fixture `site`) after site.yml
installed Kubernetes from the lab's bundle: "changed nothing" means the running cluster's node
is exactly as before."""

from __future__ import annotations

import json

import pytest

from kubestrata import playbook
from tests.harness import needs_root
from tests.kubernetes.conftest import node_state, on_all_in_one_site, plays

pytestmark = [pytest.mark.lab, needs_root, on_all_in_one_site]

KUBERNETES_PLAYS = [play["name"] for play in plays("kubernetes.yml")]
STOP_TASK = "Stop before anything changes when the install source cannot be reached"


def failure_messages(result: playbook.Result) -> dict[str, str]:
    """Host -> the whole message of its failed task, from the run's events."""
    messages = {}
    for path in result.run_dir.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text())
        if event.get("event") == "runner_on_failed":
            messages[event["event_data"]["host"]] = event["event_data"]["res"]["msg"]
    return messages


def test_an_unreachable_upstream_source_stops_the_layer_having_changed_nothing(site):
    t = site.topology
    assert site.first_run.ok, site.first_run.failures      # site.yml installed Kubernetes
    before = node_state(site)

    result = site.play("kubernetes.yml", kube_install_source="upstream")

    assert not result.ok
    assert {f.host for f in result.failures} == {n.name for n in t.nodes if n.is_kubernetes_node}
    assert {f.task for f in result.failures} == {STOP_TASK}
    minor = ".".join(t.versions["kubernetes"].split(".")[:2])
    for host, message in failure_messages(result).items():
        assert len(message) <= 400, "kubestrata shows 400 characters of a failure"
        for words in (f"install source 'upstream' cannot be reached from {host}",
                      f"tried https://pkgs.k8s.io/core:/stable:/v{minor}/deb/InRelease",
                      "Nothing was changed", "kubestrata bundle", "kube_install_source=offline"):
            assert words in message, message
    assert [layer.name for layer in result.layers] == KUBERNETES_PLAYS[:1], "only the preflight ran"
    assert result.changes == 0
    assert node_state(site) == before
