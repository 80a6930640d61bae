"""Progress from ansible-runner events: one line per layer, failures with host, task, message."""

import itertools
import json
import sys
from pathlib import Path

import pytest
import yaml

from kubestrata import playbook

HERE = Path(__file__).parent


def replay(events, **kwargs):
    lines = []
    ticks = itertools.count(0, 1.5)
    progress = playbook.Progress(out=lines.append, clock=lambda: next(ticks), **kwargs)
    for event in events:
        progress(event)
    return progress, lines


def test_a_recorded_run_gives_one_line_per_layer_and_one_per_failure():
    events = json.loads((HERE / "recorded-events.json").read_text())
    progress, lines = replay(events)
    assert len(lines) == 3
    first, failure, second = lines
    assert first.split()[:3] == ["ok", "2/2", "hosts"] and "2 changes on 2 hosts" in first
    assert "   1.5 s  first-layer:" in first
    assert failure == "  FAILED node-b | Fail on the second host | probe failure on node-b"
    assert second.split()[0] == "FAILED" and "1/2 hosts" in second and "no changes" in second
    assert progress.changes == 2 and len(progress.failures) == 1


def test_ignored_errors_and_skips_are_not_failures():
    events = [
        {"event": "playbook_on_play_start", "event_data": {"play": "prepare"}},
        {"event": "runner_on_failed", "event_data": {"host": "a", "task": "t", "ignore_errors": True,
                                                     "res": {"msg": "fine"}}},
        {"event": "runner_on_skipped", "event_data": {"host": "b", "task": "t"}},
        {"event": "playbook_on_stats", "event_data": {}},
    ]
    progress, lines = replay(events)
    assert progress.failures == [] and lines[0].split()[:3] == ["ok", "2/2", "hosts"]
    assert lines[0].endswith(" s  prepare")


def test_unreachable_hosts_are_failures_with_the_reason():
    events = [
        {"event": "playbook_on_play_start", "event_data": {"play": "runtime"}},
        {"event": "runner_on_unreachable", "event_data": {
            "host": "cp-1", "task": "Gathering Facts",
            "res": {"msg": "Failed to connect to the host via ssh: Connection refused"}}},
        {"event": "playbook_on_stats", "event_data": {}},
    ]
    _, lines = replay(events)
    assert lines[0] == ("  FAILED cp-1 | Gathering Facts | "
                        "Failed to connect to the host via ssh: Connection refused")


@pytest.mark.parametrize("res,says", [
    ({"msg": "non-zero return code", "rc": 1, "stdout": "",
      "stderr": "getting sandbox status\nE1202 rpc error: NotFound desc = pod sandbox not found\n"},
     "non-zero return code 1: E1202 rpc error: NotFound desc = pod sandbox not found"),
    ({"msg": "non-zero return code", "rc": 2, "stdout": "checking\nno such node\n", "stderr": ""},
     "non-zero return code 2: no such node"),
    ({"msg": "non-zero return code", "rc": 3, "stdout": "", "stderr": ""}, "non-zero return code 3"),
])
def test_a_failed_command_says_its_exit_code_and_last_line(res, says):
    events = [
        {"event": "playbook_on_play_start", "event_data": {"play": "kubernetes"}},
        {"event": "runner_on_failed", "event_data": {"host": "cp-1", "task": "Restart", "res": res}},
        {"event": "playbook_on_stats", "event_data": {}},
    ]
    progress, _ = replay(events)
    assert progress.failures[0].message == says


def test_verbose_streams_ansible_output_instead():
    events = [{"event": "playbook_on_play_start", "event_data": {"play": "p"}, "stdout": "PLAY [p]"},
              {"event": "playbook_on_stats", "event_data": {}, "stdout": "PLAY RECAP"}]
    _, lines = replay(events, verbose=True)
    assert lines == ["PLAY [p]", "PLAY RECAP"]


def test_a_real_run_keeps_its_events_and_output(tmp_path, monkeypatch):
    python = sys.executable
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {
        name: {"ansible_connection": "local", "ansible_python_interpreter": python}
        for name in ("node-a", "node-b")}}}))
    monkeypatch.setattr(playbook, "RUNS_DIR", tmp_path / "runs")
    lines = []
    result = playbook.run(HERE / "probe.yml", inventory, extravars={"probe_dir": str(tmp_path)},
                          out=lines.append)
    assert not result.ok and result.changes == 2
    assert [str(f) for f in result.failures] == [
        "node-b | Fail on the second host | probe failure on node-b"]
    assert (tmp_path / "node-a").read_text() == "node-a\n"
    assert result.run_dir.parent == tmp_path / "runs"
    assert (result.run_dir / "progress.log").read_text().splitlines() == lines
    events = list(result.run_dir.glob("artifacts/*/job_events/*.json"))
    assert len(events) > 10
    assert not list(result.run_dir.glob("env/extravars"))
