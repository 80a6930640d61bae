"""Fixtures of the whole suite.

The lab every layer's topology tests share: for each topology, fresh lab nodes and one
site.yml run of every layer on them (the Kubernetes layer stops at its install source here).
Session-scoped, so pytest runs all tests of one topology (tests/layers, tests/etcd,
tests/kubernetes) on one lab before it brings up the next."""

import time

import pytest

from kubestrata import topology


@pytest.fixture(scope="session", params=topology.NAMES)
def site(request, tmp_path_factory):
    from tests.harness import lab_cluster, renamed_topology

    work = tmp_path_factory.mktemp(f"site-{request.param}")
    with lab_cluster(renamed_topology(request.param, work, "site"), work) as cluster:
        started = time.monotonic()
        cluster.first_run = cluster.play("site.yml")
        print(f"{request.param}: site.yml took {time.monotonic() - started:.0f} s")
        yield cluster


def _site_of(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("site") if callspec and "site" in item.fixturenames else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """A topology's site lab goes down once the last of its tests has run, not when the session
    ends: idle, its cluster would still load the machine while the other tests run (an 8-node
    cluster did through the VM tests). The tests of a lab run one after another
    (tests/scheduling.py, and pytest's ordering by parameter); one that needed it again would
    bring it up again."""
    name = _site_of(item)
    if name is None or (nextitem is not None and _site_of(nextitem) == name):
        return
    for fixturedef in item._fixtureinfo.name2fixturedefs.get("site", ()):
        fixturedef.finish(item._request)


# ---- the layer checks (tests/*/checks): testinfra against any inventory ---------------------
# `kubestrata verify NAME` runs them, or pytest directly:
#   pytest tests/layers/checks tests/etcd/checks --hosts=ansible://all \
#       --ansible-inventory=inventories/lab/NAME/hosts.yml -m "prepare or etcd"
# Without an inventory nothing of them runs: the checks never probe the machine pytest runs on.

CHECKED_LAYERS = {"prepare": "every node", "runtime": "k8s_cluster", "cni": "k8s_cluster",
                  "etcd": "etcd members and control planes", "lb": "lb nodes",
                  "kubernetes": "k8s_cluster"}


def pytest_configure(config):
    for layer, hosts in CHECKED_LAYERS.items():
        config.addinivalue_line("markers", f"{layer}: checks of the {layer} layer ({hosts})")
    if not config.option.ansible_inventory and not hasattr(config, "workerinput"):
        from tests.scheduling import Timing
        config.pluginmanager.register(Timing(), "kubestrata-test-timing")


def pytest_xdist_make_scheduler(config, log):
    """The suite's tests in parallel, a lab's tests in one worker (tests/scheduling.py); the
    layer checks against an inventory keep `kubestrata verify`'s own scheduler."""
    if config.option.ansible_inventory:
        return None
    from tests.scheduling import LabScheduling
    return LabScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if config.option.ansible_inventory:
        return
    from tests.scheduling import check_site_groups
    check_site_groups(items)
    skip = pytest.mark.skip(reason="layer checks need an inventory: `kubestrata verify NAME`, or "
                                   "--hosts=ansible://all --ansible-inventory=PATH")
    for item in items:
        if "/checks/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def inventory(request):
    from testinfra.utils.ansible_runner import AnsibleRunner
    return AnsibleRunner.get_runner(request.config.option.ansible_inventory)


@pytest.fixture
def hostvars(host) -> dict:
    """The inventory variables of the host under test."""
    return host.ansible.get_variables()


def in_group(hostvars: dict, group: str, what: str) -> dict:
    """hostvars when the host is in group; else the check skips it, saying it is not `what`."""
    if group not in hostvars["group_names"]:
        pytest.skip(f"{hostvars['inventory_hostname']} is not {what}")
    return hostvars


@pytest.fixture
def k8s_node(hostvars) -> dict:
    return in_group(hostvars, "k8s_cluster", "a Kubernetes node")


@pytest.fixture
def control_plane(hostvars) -> dict:
    return in_group(hostvars, "kube_control_plane", "a control-plane node")


@pytest.fixture
def member(hostvars) -> dict:
    return in_group(hostvars, "etcd", "an etcd member")


@pytest.fixture
def lb_node(hostvars) -> dict:
    return in_group(hostvars, "lb", "a holder of the API virtual IP (lb group)")
