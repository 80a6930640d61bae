"""`kubestrata validate` says what the topology is, and where a choice is upstream only."""

import pytest

from kubestrata import cli


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_a_pod_network_not_built_from_source_is_named_upstream_only(cni, capsys):
    assert cli.main(["validate", "all-in-one", "--set", f"cni={cni}"]) == 0
    out = capsys.readouterr().out
    assert f"cni {cni}: upstream only" in out and "carry bridge only" in out


def test_the_bridge_network_is_not_flagged(capsys):
    assert cli.main(["validate", "all-in-one"]) == 0
    assert "upstream only" not in capsys.readouterr().out
