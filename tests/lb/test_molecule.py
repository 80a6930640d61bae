"""The ha_endpoint role's molecule scenario on lab nodes of its own: converge, idempotence, the
HA endpoint layer checks, and nothing left behind."""

import pytest

from tests.harness import molecule_test, needs_root

pytestmark = [pytest.mark.lab, needs_root]


def test_the_ha_endpoint_role_passes_its_molecule_scenario():
    molecule_test("ha_endpoint")
