"""remote.wait_until_ready: a failing connection (ssh's 255) is tried again, a failing readiness
command is final and reported with its output."""

import subprocess

from kubestrata import remote


def scripted(monkeypatch, exits: dict[str, list[int]]):
    calls = []

    def fake_run(host, command, timeout):
        calls.append(host["inventory_hostname"])
        code = exits[host["inventory_hostname"]].pop(0)
        return subprocess.CompletedProcess([], code, "status: error\n" if code == 1 else "", "")

    monkeypatch.setattr(remote, "run", fake_run)
    monkeypatch.setattr(remote.time, "sleep", lambda seconds: None)
    return calls


def hosts(*names):
    return {name: {"inventory_hostname": name} for name in names}


def test_connections_refused_then_ready(monkeypatch):
    calls = scripted(monkeypatch, {"vm-1": [255, 255, 0]})
    assert remote.wait_until_ready(hosts("vm-1"), timeout=60, ready="cloud-init status --wait") == {}
    assert calls == ["vm-1"] * 3


def test_a_failed_readiness_command_is_reported_at_once(monkeypatch):
    calls = scripted(monkeypatch, {"vm-1": [255, 1], "vm-2": [0]})
    waiting = remote.wait_until_ready(hosts("vm-1", "vm-2"), timeout=60, ready="check")
    assert waiting == {"vm-1": "`check` exited 1: status: error"}
    assert calls.count("vm-1") == 2


def test_never_reachable_is_named_with_the_timeout(monkeypatch):
    scripted(monkeypatch, {"vm-1": [255] * 1000})
    ticks = iter(range(0, 10_000, 30))
    monkeypatch.setattr(remote.time, "monotonic", lambda: next(ticks))
    assert remote.wait_until_ready(hosts("vm-1"), timeout=300) == {"vm-1": "no SSH login within 300 s"}
