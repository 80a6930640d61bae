"""etcd layer checks: testinfra against any inventory, like the other layers' checks.

    pytest tests/etcd/checks --hosts=ansible://all \\
        --ansible-inventory=inventories/lab/NAME/hosts.yml

Without an inventory nothing runs (the checks never probe the machine pytest runs on).
"""

import shlex
from pathlib import Path

import pytest

from tests.layers.checks.conftest import hostvars, inventory  # noqa: F401  (shared fixtures)

TLS_PROBE = (Path(__file__).parent / "tls_probe.py").read_text()


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "etcd: checks of the etcd layer (etcd and control-plane nodes)")


def pytest_collection_modifyitems(config, items):
    if config.option.ansible_inventory:
        return
    skip = pytest.mark.skip(reason="etcd checks need an inventory: --hosts=ansible://all "
                                   "--ansible-inventory=PATH")
    for item in items:
        if str(Path(__file__).parent) in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def member(hostvars):  # noqa: F811
    """The host's variables; skips hosts that are not etcd members."""
    if "etcd" not in hostvars["group_names"]:
        pytest.skip(f"{hostvars['inventory_hostname']} is not an etcd member")
    return hostvars


@pytest.fixture
def control_plane(hostvars):  # noqa: F811
    if "kube_control_plane" not in hostvars["group_names"]:
        pytest.skip(f"{hostvars['inventory_hostname']} is not a control-plane node")
    return hostvars


def etcdctl(host, arguments: str, endpoint: str | None = None):
    """etcdctl on a member as the health-check client (the role's /etc/etcd/etcdctl.env),
    talking to that member or to endpoint."""
    override = f"ETCDCTL_ENDPOINTS={endpoint} " if endpoint else ""
    return host.run(f"set -a; . /etc/etcd/etcdctl.env; set +a; {override}etcdctl {arguments}")


def owners_and_modes(host, paths) -> dict[str, tuple[str, str, int]]:
    """path -> (user, group, mode) for each existing path, read with one command."""
    out = host.run(f"stat -c '%U %G %a %n' {shlex.join(paths)}").stdout
    found = {}
    for line in out.splitlines():
        user, group, mode, path = line.split(" ", 3)
        found[path] = (user, group, int(mode, 8))
    return found


def tls_get_version(host, address: str, port: int, ca: str, cert: str = "-", key: str = "-",
                    server_name: str | None = None):
    """GET /version from address:port over TLS, run on host; rc 0 and the body when served."""
    args = [address, str(port), ca, cert, key, server_name or address]
    return host.run(f"python3 -c {shlex.quote(TLS_PROBE)} {shlex.join(args)}")
