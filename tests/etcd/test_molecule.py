"""The etcd role's molecule scenario on a lab node of its own: converge, idempotence, the etcd
layer checks, and nothing left behind."""

import pytest

from tests.harness import molecule_test, needs_root

pytestmark = [pytest.mark.lab, needs_root]


def test_the_etcd_role_passes_its_molecule_scenario():
    molecule_test("etcd")
