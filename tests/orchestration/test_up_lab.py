"""`kubestrata up --provider lab` from nothing for all-in-one, as a user runs it (no -e): the
machines, every layer with Kubernetes from the bundle the lab serves, every layer verified, and
the summary with the kubeconfig and the kubectl line, which shows the node Ready; a second `up`
changes nothing in any layer and says so; `kubestrata plan` names drift made by hand and the next
`up` puts it back. And `kubestrata verify` on single-master's shared lab
with one layer broken on one node reports exactly that layer and node, until the layer is
applied again."""

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from kubestrata.lab.lab import Lab
from kubestrata.paths import STATE_DIR
from kubestrata.verify import LAYERS
from tests.harness import VENV_BIN, needs_root, renamed_topology, table_row
from tests.lab.conftest import leftovers, ssh

pytestmark = [pytest.mark.lab, needs_root]

NODE_LAYERS = ["prepare", "runtime", "cni", "etcd", "lb"]


def kubestrata(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "kubestrata"), *args], capture_output=True, text=True,
                          timeout=2400, cwd=cwd)


@pytest.fixture(scope="module")
def two_ups(tmp_path_factory):
    """`kubestrata up` twice on a fresh all-in-one lab; the lab and its PKI removed after."""
    topo = renamed_topology("all-in-one", tmp_path_factory.mktemp("up"), "up")
    lab = Lab(topo)
    lab.down()
    try:
        yield topo, *(kubestrata("up", str(topo.source)) for _ in range(2))
    finally:
        down = kubestrata("down", str(topo.source), "--yes")
        shutil.rmtree(STATE_DIR / "pki" / topo.name, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert leftovers(lab) == []


def summary_value(output: str, label: str) -> str:
    match = re.search(rf"^  {label}:\s+(.+)$", output, re.M)
    assert match, output
    return match.group(1).strip()


def test_up_installs_and_verifies_every_layer_kubernetes_included(two_ups):
    topo, first, _ = two_ups
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert re.search(r"^machines\s+done in [\d.]+ s: \d+ changes$", first.stdout, re.M)
    assert re.search(r"^layers\s+done in [\d.]+ s: \d+ changes$", first.stdout, re.M)
    for layer in LAYERS:
        assert "FAIL" not in table_row(first.stdout, layer), first.stdout
    for layer in ["prepare", "runtime", "cni", "etcd", "kubernetes"]:
        assert table_row(first.stdout, layer)[0] == "ok", first.stdout      # node-1's column
    assert set(table_row(first.stdout, "lb")) == {"-"}      # no load balancer in all-in-one
    assert re.search(r"^verify\s+done in [\d.]+ s: .*kubernetes verified", first.stdout, re.M)


def ready_node(kubectl: subprocess.CompletedProcess, topo) -> None:
    """`get nodes -o json` listed the one node, Ready, its kubelet at the topology's version."""
    assert kubectl.returncode == 0, kubectl.stderr
    [node] = json.loads(kubectl.stdout)["items"]
    assert node["metadata"]["name"] == "node-1"
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{topo.versions['kubernetes']}"


def test_kubectl_through_the_printed_kubeconfig_shows_the_node_ready(two_ups):
    topo, first, _ = two_ups
    kubeconfig = Path(summary_value(first.stdout, "kubeconfig"))
    assert kubeconfig.is_file() and kubeconfig.stat().st_mode & 0o077 == 0
    ready_node(kubestrata("kubectl", str(topo.source), "--", "get", "nodes", "-o", "json"), topo)


def test_the_printed_kubectl_line_runs_as_printed(two_ups):
    topo, first, _ = two_ups
    line = summary_value(first.stdout, "kubectl")
    assert line.startswith("kubestrata kubectl ") and line.endswith(" -- get nodes"), line
    # As a user runs it: from where the topology file is, where `up` was run.
    ready_node(kubestrata(*shlex.split(line)[1:], "-o", "json", cwd=Path(topo.source).parent), topo)


def test_a_second_up_changes_nothing_in_any_layer(two_ups):
    _, _, second = two_ups
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert re.search(r"^machines\s+done in [\d.]+ s: nothing changed$", second.stdout, re.M)
    assert re.search(r"^layers\s+done in [\d.]+ s: nothing changed$", second.stdout, re.M)
    plays = [line for line in second.stdout.splitlines() if re.match(r"  (ok|FAILED) ", line)]
    assert any(line.endswith("Kubernetes pod network: pod CIDRs from the topology and the add-on")
               for line in plays), second.stdout
    assert all(line.startswith("  ok ") and "no changes" in line for line in plays), second.stdout


DRIFT = {"file": ("runtime", "Configure containerd and its CRI plugin"),
         "package": ("prepare", "Install the base packages that are missing"),
         "service": ("prepare", "Run chrony now and at boot")}


def node_state(lab: Lab) -> dict[str, str]:
    """What the drift test changes on node-1: a file, a package and a service."""
    out = ssh(lab, lab.topology.node("node-1"),
              "tail -n 1 /etc/containerd/config.toml;"
              " dpkg-query -W -f '${db:Status-Abbrev}\\n' socat 2>/dev/null || echo removed;"
              " systemctl is-active chrony; systemctl is-enabled chrony", check=False)
    file, package, active, enabled = out.splitlines()
    return {"file": file, "package": package.strip(), "service": f"{active} {enabled}"}


def test_plan_shows_drift_and_up_puts_it_back(two_ups):
    """A file, a package and a service changed by hand: `plan` names each (layer, node, task)
    and changes nothing; `up` puts each back; `plan` then says nothing would change."""
    topo, *_ = two_ups
    lab = Lab(topo)
    converged = node_state(lab)
    assert converged == {"file": converged["file"], "package": "ii",
                         "service": "active enabled"}
    ssh(lab, topo.node("node-1"), "echo '# drift' >> /etc/containerd/config.toml && "
        "apt-get remove -qq socat >/dev/null && systemctl disable --now -q chrony")
    drifted = node_state(lab)
    assert drifted == {"file": "# drift", "package": "removed", "service": "inactive disabled"}

    plan = kubestrata("plan", str(topo.source))
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-2000:]
    planned = {tuple(line.split(None, 2)) for line in plan.stdout.splitlines()
               if re.match(r" {11}\w+ +node-1 ", line)}
    assert {(layer, "node-1", task) for layer, task in DRIFT.values()} <= planned, plan.stdout
    assert {layer for layer, _, _ in planned} == {"prepare", "runtime"}, plan.stdout
    assert node_state(lab) == drifted

    up = kubestrata("up", str(topo.source))
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
    assert node_state(lab) == converged
    again = kubestrata("plan", str(topo.source))
    assert re.search(r"^plan\s+done in [\d.]+ s: nothing would change$", again.stdout, re.M), \
        again.stdout


@pytest.mark.parametrize("site", ["single-master"], indirect=True)
def test_verify_reports_exactly_the_broken_layer_and_node(site):
    declared = "/etc/modules-load.d/kubestrata.conf"
    site.ssh("worker-1", f"mv {declared} {declared}.broken-by-test")
    try:
        broken = site.verify(NODE_LAYERS)
    finally:
        site.ssh("worker-1", f"mv {declared}.broken-by-test {declared}")
    assert broken.returncode == 1
    header = broken.stdout.splitlines()[0].split()
    assert header[:3] == ["layer", "cp-1", "worker-1"]
    assert table_row(broken.stdout, "prepare")[:2] == ["ok", "FAIL"]
    for layer in NODE_LAYERS[1:]:
        assert "FAIL" not in table_row(broken.stdout, layer), broken.stdout
    failures = [line for line in broken.stdout.splitlines() if line.startswith("FAIL ")]
    assert failures and all(line.startswith("FAIL prepare on worker-1: ") for line in failures)

    repaired = site.verify(["prepare"])
    assert repaired.returncode == 0, repaired.stdout
