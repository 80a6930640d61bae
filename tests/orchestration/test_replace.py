"""`kubestrata replace` on ha-external-etcd's shared lab, after a machine died: etcd-1's power is
cut (every process of the node killed at once, nothing shut down in order), then `kubestrata
replace` takes it out of etcd, makes a new machine with a new SSH host key and joins it as a new
member; then the same for cp-1, the first control plane, whose successor joins through cp-2.
Meanwhile a client writes and reads a ConfigMap through the API virtual IP without pause; the
requests that failed while each replace ran, and its time, are printed (the aim: none failed).
Each replace ends with the checks of the layers it ran, on every node, which must pass: etcd's
after etcd-1, every layer's (etcd and Kubernetes among them) after cp-1. The lab is left whole,
both nodes replaced and healthy, for the tests after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from kubestrata.lab import machine
from tests.harness import VENV_BIN, needs_root, table_row
from tests.kubernetes.test_ha_cluster import Api

pytestmark = [pytest.mark.lab, needs_root]

PROBE_OBJECT = "replace-probe"
# What each replace verifies on every node: the layers its site.yml run ran.
VERIFIED = {"etcd-1": ["prepare", "etcd"],
            "cp-1": ["prepare", "runtime", "cni", "etcd", "lb", "kubernetes"]}


class Traffic(threading.Thread):
    """A write (an annotation of one ConfigMap) and a read of what was written, through the
    virtual IP, again and again until stopped; counts the requests that failed."""

    def __init__(self, api: Api):
        super().__init__(daemon=True)
        self.api = api
        self.requests = self.failed = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def request(self, args: str, expected: str | None = None) -> bool:
        self.requests += 1
        try:
            answer = self.api(args, timeout="5s")
        except subprocess.TimeoutExpired:
            answer = subprocess.CompletedProcess(args, 1, "", "no answer within 60 s")
        if answer.returncode == 0 and (expected is None or answer.stdout.strip() == expected):
            return True
        self.failed += 1
        self.errors.append(f"{time.strftime('%H:%M:%S')} {args.split()[0]}: "
                           f"{(answer.stderr or answer.stdout).strip()[:200]}")
        return False

    def run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            count += 1
            if self.request(f"annotate configmap {PROBE_OBJECT} -n default --overwrite "
                            f"count={count}"):
                self.request(f"get configmap {PROBE_OBJECT} -n default -o "
                             "jsonpath={.metadata.annotations.count}", expected=str(count))
            time.sleep(0.5)

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def cut_power(site, node: str) -> None:
    """Kill every process of the node at once, as a machine that loses its power stops."""
    cgroup = machine.cgroup_path(site.lab.name, node)
    nspawn = machine.nspawn_pids(site.lab.name)[node]
    while pids := machine.cgroup_pids(cgroup):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    try:
        os.waitpid(nspawn, 0)       # this process booted it (the site fixture's lab up)
    except ChildProcessError:
        pass


def settle(api: Api, seconds: float = 60.0) -> int:
    """Ask until the API answers through the virtual IP again; returns how many asks failed."""
    deadline = time.monotonic() + seconds
    failed = 0
    while api("get configmap " + PROBE_OBJECT + " -n default", timeout="3s").returncode != 0:
        failed += 1
        assert time.monotonic() < deadline, "the API did not answer after the node died"
        time.sleep(0.5)
    return failed


def replace(site, node: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "kubestrata"), "replace", str(site.topology.source),
                           node, "--yes", "-e", f"@{site.variables_file()}"],
                          capture_output=True, text=True, timeout=1800, cwd=site.work)


def etcd_members(site) -> dict[str, str]:
    """Member name -> ID, as etcd-3 lists them."""
    listed = json.loads(site.etcdctl("etcd-3", "member list --write-out=json"))
    return {m.get("name", ""): f"{m['ID']:x}" for m in listed["members"]}


@pytest.mark.parametrize("site", ["ha-external-etcd"], indirect=True)
def test_a_dead_etcd_member_and_a_dead_control_plane_are_replaced_while_the_api_serves(site):
    api = Api(site)
    api.write(PROBE_OBJECT)
    figures = []
    for node in ("etcd-1", "cp-1"):
        members_before = etcd_members(site)
        cut_power(site, node)
        after_death = settle(api)
        traffic = Traffic(api)
        traffic.start()
        started = time.monotonic()
        try:
            replaced = replace(site, node)
        finally:
            traffic.stop()
        seconds = time.monotonic() - started
        print(replaced.stdout)
        figures.append(f"{node}: replaced in {seconds:.0f} s; {traffic.failed} of "
                       f"{traffic.requests} requests through the virtual IP failed meanwhile "
                       f"({after_death} asks failed right after it died)")
        print(figures[-1], *traffic.errors, sep="\n  ")
        assert replaced.returncode == 0, replaced.stdout[-6000:] + replaced.stderr[-3000:]
        assert "Traceback" not in replaced.stderr
        for layer in VERIFIED[node]:
            assert "FAIL" not in table_row(replaced.stdout, layer), replaced.stdout
        new_key, _, old_key = replaced.stdout.rpartition("SSH host key ")[2].partition(" (was ")
        assert new_key.startswith("SHA256:") and new_key != old_key.rstrip(")\n")
        members = etcd_members(site)
        assert sorted(members) == ["etcd-1", "etcd-2", "etcd-3"], members
        if node == "etcd-1":
            assert members["etcd-1"] != members_before["etcd-1"], "a new member, a new ID"
        assert api.ready_nodes() == {n.name for n in site.topology.nodes if n.is_kubernetes_node}
        assert traffic.failed <= traffic.requests // 20, traffic.errors
    print("\n".join(figures))
    api(f"delete configmap {PROBE_OBJECT} -n default")
