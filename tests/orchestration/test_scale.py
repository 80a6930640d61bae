"""Scaling by editing the topology, on single-master's shared lab, as a user does it: one more
worker in the topology and `kubestrata up` boots it, runs every layer on it and joins it, Ready;
one fewer and `up` asks first (without --yes it stops, having changed nothing), then drains it,
deletes its Node, resets it and removes the machine. The lab ends as it began (two workers)."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from kubestrata.lab import network
from tests.harness import VENV_BIN, needs_root, table_row

pytestmark = [pytest.mark.lab, needs_root]


def up_with_workers(site, count: int, *options: str) -> subprocess.CompletedProcess:
    """`kubestrata up` of the lab's topology with count workers (same name: the same lab)."""
    source = Path(site.topology.source)
    spec = yaml.safe_load(source.read_text())
    for group in spec["node_groups"]:
        if group["name"] == "worker":
            group["count"] = count
    path = site.work / f"scaled-{count}" / source.name
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run([str(VENV_BIN / "kubestrata"), "up", str(path),
                           "-e", f"@{site.variables_file()}", *options],
                          capture_output=True, text=True, timeout=1800, cwd=site.work)


def nodes_ready(site) -> dict[str, str]:
    listed = json.loads(site.ssh("cp-1", "kubectl --kubeconfig /etc/kubernetes/admin.conf "
                                         "get nodes -o json"))
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                        if c["type"] == "Ready") for n in listed["items"]}


def lab_nodes(site) -> set[str]:
    return {ns.split(".", 1)[1] for ns in network.namespaces(site.lab.name)
            if ns != site.lab.namespace}


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_a_worker_joins_and_leaves_by_editing_the_count(site):
    grown = up_with_workers(site, 3)
    assert grown.returncode == 0, grown.stdout[-4000:] + grown.stderr[-2000:]
    assert nodes_ready(site) == {"cp-1": "True", "worker-1": "True", "worker-2": "True",
                                 "worker-3": "True"}
    assert table_row(grown.stdout, "kubernetes")[:4] == ["ok"] * 4, grown.stdout

    unconfirmed = up_with_workers(site, 2)
    assert unconfirmed.returncode == 1
    assert "up would remove worker-3, which the topology no longer has; confirm with --yes" \
        in unconfirmed.stderr
    assert "worker-3" in nodes_ready(site) and "worker-3" in lab_nodes(site)

    shrunk = up_with_workers(site, 2, "--yes")
    assert shrunk.returncode == 0, shrunk.stdout[-4000:] + shrunk.stderr[-2000:]
    assert "retire     done" in shrunk.stdout and "worker-3 drained" in shrunk.stdout
    assert nodes_ready(site) == {"cp-1": "True", "worker-1": "True", "worker-2": "True"}
    assert lab_nodes(site) == {"cp-1", "worker-1", "worker-2"}
    assert "worker-3" not in site.inventory.read_text()
