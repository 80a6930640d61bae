"""The container runtime restarts one node at a time: on single-master's shared lab, with
containerd's configuration and the pod network's changed on every Kubernetes node, the runtime
and CNI layers restart containerd on each node, and no two restarts overlap."""

import json
from datetime import datetime, timedelta

import pytest

from tests.harness import needs_root

pytestmark = [pytest.mark.lab, needs_root]

RESTARTS = ("Restart containerd, one node at a time",
            "Restart the container runtime to load the pod network, one node at a time")


# A result's end is stamped by the callback a few milliseconds after the next node's start
# (the strategy starts it as soon as the result arrives); a restart takes a third of a second
# or more, so restarts at the same time would overlap by far more than this.
CALLBACK_LAG = timedelta(seconds=0.1)


def restarts(run_dir, task: str) -> list[tuple[datetime, datetime, str]]:
    """(start, end, host) of each node's run of the task, in order of start."""
    found = []
    for path in run_dir.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == task:
            found.append((datetime.fromisoformat(data["start"]),
                          datetime.fromisoformat(data["end"]), data["host"]))
    return sorted(found)


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_the_runtime_restarts_one_node_at_a_time(site):
    nodes = ["cp-1", "worker-1", "worker-2"]
    for node in nodes:
        site.ssh(node, "echo '# changed by test' >> /etc/containerd/config.toml && "
                       "sed -i 's/\"cniVersion\"/\"cniVersion\" /' "
                       "/etc/cni/net.d/10-kubestrata-bridge.conflist")
    result = site.play("site.yml", tags=["runtime", "cni"])
    assert result.ok, result.failures
    for task in RESTARTS:
        runs = restarts(result.run_dir, task)
        assert sorted(host for _, _, host in runs) == nodes, (task, runs)
        for (_, end, host), (start, _, following) in zip(runs, runs[1:]):
            assert start >= end - CALLBACK_LAG, f"{task}: {following} began before {host} was done"
    assert site.verify(["runtime", "cni"]).returncode == 0
