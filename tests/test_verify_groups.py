"""kubestrata verify's workers: the checks of one node, or of the cluster, run in one worker,
in order, so that a module's fixtures (the cluster checks' workload) are set up once."""

import os
import subprocess
import sys

import pytest

from kubestrata import verify

CHECKS = '''
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def workload():
    Path(os.environ["RECORD"], "setups").open("a").write("setup\\n")
    return os.environ["PYTEST_XDIST_WORKER"]


@pytest.mark.parametrize("n", range(6))
def test_cluster_check(workload, n):
    assert workload == os.environ["PYTEST_XDIST_WORKER"]
'''


def test_cluster_checks_share_one_worker_and_one_workload(tmp_path):
    (tmp_path / "test_checks.py").write_text(CHECKS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-p", "kubestrata.verify", "-n", "3",
         "-p", "no:cacheprovider", "-o", "addopts=", "-q", "--rootdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "RECORD": str(tmp_path), verify.NODES_VARIABLE: "cp-1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "setups").read_text() == "setup\n"


@pytest.mark.parametrize("nodeid,node", [
    ("tests/layers/checks/test_prepare.py::test_swap[ansible://worker-1]", "worker-1"),
    ("tests/etcd/checks/test_etcd.py::test_listens[ansible://cp-1-2379]", "cp-1"),
    ("tests/etcd/checks/test_etcd.py::test_listens[ansible://cp-10-2379]", "cp-10"),
    ("tests/kubernetes/checks/test_cluster.py::test_every_node_is_ready", "cluster"),
])
def test_a_check_goes_to_the_work_unit_of_its_node(nodeid, node, monkeypatch):
    monkeypatch.setenv(verify.NODES_VARIABLE, "cp-1,cp-10,worker-1")
    assert verify.NodeScheduling._split_scope(None, nodeid) == node
