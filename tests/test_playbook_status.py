"""Every way an ansible-runner run can end gives a result and a line that says how it ended."""

from dataclasses import dataclass

import ansible_runner
import pytest

from kubestrata import orchestrate, playbook
from kubestrata.paths import PLAYBOOK_DIR


@dataclass
class FakeRunner:
    """What ansible_runner.run returns, as far as playbook.run reads it."""
    status: str
    rc: int = 1


def run_ending_with(status, monkeypatch, tmp_path):
    monkeypatch.setattr(ansible_runner, "run", lambda **_: FakeRunner(status))
    lines = []
    result = playbook.run(PLAYBOOK_DIR / "site.yml", tmp_path / "hosts.yml", out=lines.append,
                          run_dir=tmp_path)
    return result, lines


@pytest.mark.parametrize("status,says", [
    ("timeout", "ran past its timeout"),
    ("canceled", "was canceled"),
    ("error", "could not run it"),
    ("unstarted", "status unstarted"),
])
def test_a_run_that_did_not_finish_fails_with_how_it_ended(status, says, monkeypatch, tmp_path):
    result, lines = run_ending_with(status, monkeypatch, tmp_path)
    assert not result.ok
    assert len(lines) == 1 and says in lines[0] and str(tmp_path / "artifacts") in lines[0]
    assert (tmp_path / "progress.log").read_text() == lines[0] + "\n"
    assert says in orchestrate.failure_message(result)


@pytest.mark.parametrize("status,ok", [("successful", True), ("failed", False)])
def test_a_finished_run_adds_no_line(status, ok, monkeypatch, tmp_path):
    result, lines = run_ending_with(status, monkeypatch, tmp_path)
    assert result.ok is ok and lines == []
