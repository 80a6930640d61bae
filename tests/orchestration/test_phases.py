"""The phases of `up` and `upgrade`: order, skipping, stopping at a failure, and which layers
count as finished when a playbook fails part-way (those are the ones verified)."""

import pytest

from kubestrata import orchestrate, playbook, verify
from kubestrata.paths import PLAYBOOK_DIR

SITE = PLAYBOOK_DIR / "site.yml"


def test_site_applies_the_verified_layers_in_their_order():
    layers = list(dict.fromkeys(playbook.play_layers(SITE).values()))
    assert layers == list(verify.LAYERS)


def result_of(plays: list[tuple[str, bool]]) -> playbook.Result:
    """A run's result whose plays (name, failed) ended in that order."""
    layers = []
    for name, failed in plays:
        layer = playbook.Layer(name, 0.0, hosts={"node-1"}, seconds=1.0)
        if failed:
            layer.failed_hosts.add("node-1")
        layers.append(layer)
    return playbook.Result(not any(f for _, f in plays), PLAYBOOK_DIR, layers, [], 0)


def test_the_layers_before_a_failed_play_are_the_finished_ones():
    names = {layer: name for name, layer in playbook.play_layers(SITE).items()}
    plays = [(names[layer], False) for layer in ("prepare", "runtime", "cni", "etcd", "lb")]
    failed = result_of(plays + [(names["kubernetes"], True)])
    assert playbook.finished_layers(failed, SITE) == ["prepare", "runtime", "cni", "etcd", "lb"]


def test_a_layer_with_a_failed_play_is_not_finished_even_if_an_earlier_play_of_it_ran():
    etcd_plays = [name for name, layer in playbook.play_layers(SITE).items() if layer == "etcd"]
    assert len(etcd_plays) == 2
    prepare = next(n for n, layer in playbook.play_layers(SITE).items() if layer == "prepare")
    failed = result_of([(prepare, False), (etcd_plays[0], False), (etcd_plays[1], True)])
    assert playbook.finished_layers(failed, SITE) == ["prepare"]


def test_phases_run_in_order_skip_what_is_not_needed_and_stop_at_a_failure():
    ran, lines = [], []

    def fail():
        raise orchestrate.PhaseFailed("layers: node-1 failed")

    phases = [orchestrate.Phase("machines", lambda: ran.append("machines") or "nothing changed"),
              orchestrate.Phase("skipped", lambda: ran.append("skipped") or "", lambda: False),
              orchestrate.Phase("layers", fail),
              orchestrate.Phase("verify", lambda: ran.append("verify") or "")]
    with pytest.raises(orchestrate.PhaseFailed, match="node-1 failed"):
        orchestrate.execute(phases, out=lines.append)
    assert ran == ["machines"]
    assert lines[1].startswith("machines   done in ") and lines[1].endswith(": nothing changed")
    assert lines[2] == "skipped    skipped: not needed"
    assert lines[-1] == "layers     ..."
