"""kubestrata plan's count of what would change: tasks Ansible reports changed in check mode,
and the commands that would run, which Ansible reports as skipped and only our callback lists
(src/kubestrata/ansible_plugins/callback/kubestrata_would_run.py)."""

import json

from kubestrata import orchestrate, playbook


def event(kind: str, **data) -> dict:
    return {"event": kind, "event_data": data}


def test_commands_that_would_run_count_as_changes_of_their_play(tmp_path):
    would_run = tmp_path / "would-run.jsonl"
    lines = []
    progress = playbook.Progress(out=lines.append, clock=iter(range(100)).__next__,
                                 would_run=would_run)
    progress(event("playbook_on_play_start", play="Prepare the operating system of every node"))
    progress(event("runner_on_ok", host="node-1", task="Run chrony", res={"changed": True}))
    progress(event("runner_on_ok", host="node-2", task="Run chrony", res={"changed": False}))
    progress(event("runner_on_skipped", host="node-2", task="Join the cluster"))
    would_run.write_text(json.dumps({"play": "Prepare the operating system of every node",
                                     "host": "node-2", "task": "Join the cluster"}) + "\n")
    progress(event("playbook_on_play_start", play="Install the container runtime"))
    progress(event("runner_on_ok", host="node-1", task="Configure containerd", res={}))
    progress(event("playbook_on_stats"))

    prepare, runtime = progress.layers
    assert prepare.changed_tasks == [("node-1", "Run chrony"), ("node-2", "Join the cluster")]
    assert "2 changes on 2 hosts" in lines[0]
    assert runtime.changed_tasks == [] and "no changes" in lines[1]
    result = playbook.Result(True, tmp_path, progress.layers, [], progress.changes)
    assert orchestrate.plan_lines(result, {prepare.name: "prepare"}) == [
        f"{'prepare':<12} {'node-1':<12} Run chrony", f"{'prepare':<12} {'node-2':<12} Join the cluster"]


def test_a_no_log_task_that_changed_counts_though_its_result_is_censored(tmp_path):
    progress = playbook.Progress(out=lambda line: None, clock=iter(range(100)).__next__)
    progress({"event": "playbook_on_play_start", "event_data": {"play": "Kubernetes"}})
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was "
                            "specified for this result"}
    for host, line in (("cp-1", "\x1b[0;33mchanged: [cp-1 -> localhost]\x1b[0m"),
                       ("cp-2", "\x1b[0;32mok: [cp-2]\x1b[0m")):
        progress({"event": "runner_on_ok", "stdout": line,
                  "event_data": {"host": host, "task": "Write the keys", "res": censored}})
    progress({"event": "playbook_on_stats", "event_data": {}})
    assert progress.layers[0].changed_tasks == [("cp-1", "Write the keys")]
