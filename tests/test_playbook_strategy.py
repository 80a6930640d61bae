"""The layers run with Mitogen's strategy unless switched to Ansible's own."""

from pathlib import Path

from kubestrata import playbook


def test_mitogen_is_the_default_strategy(monkeypatch):
    monkeypatch.delenv(playbook.STRATEGY_SWITCH, raising=False)
    env = playbook.strategy_env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()


def test_the_switch_gives_ansibles_own_strategy(monkeypatch):
    monkeypatch.setenv(playbook.STRATEGY_SWITCH, "linear")
    assert playbook.strategy_env() == {"ANSIBLE_STRATEGY": "linear"}
