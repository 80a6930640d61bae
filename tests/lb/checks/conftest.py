"""HA endpoint checks: testinfra against any inventory, like the other layers' checks.

    pytest tests/lb/checks --hosts=ansible://all \\
        --ansible-inventory=inventories/lab/NAME/hosts.yml

Without an inventory nothing runs (the checks never probe the machine pytest runs on).
"""

from pathlib import Path

import pytest

from tests.layers.checks.conftest import hostvars, inventory  # noqa: F401  (shared fixtures)


def pytest_configure(config):
    config.addinivalue_line("markers", "lb: checks of the HA API endpoint (lb nodes)")


def pytest_collection_modifyitems(config, items):
    if config.option.ansible_inventory:
        return
    skip = pytest.mark.skip(reason="lb checks need an inventory: --hosts=ansible://all "
                                   "--ansible-inventory=PATH")
    for item in items:
        if str(Path(__file__).parent) in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def lb_node(hostvars):  # noqa: F811
    """The host's variables; skips hosts outside the lb group (and topologies without a VIP)."""
    if "lb" not in hostvars["group_names"]:
        pytest.skip(f"{hostvars['inventory_hostname']} does not hold the API virtual IP")
    return hostvars
