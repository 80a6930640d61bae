"""In check mode Ansible reports a command that would run as skipped, and ansible-runner's events
leave out the reason; `kubestrata plan` needs it. This callback appends each such task, as a
JSON line with its play, host and name, to the file KUBESTRATA_WOULD_RUN names."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: kubestrata_would_run
type: aggregate
short_description: the command tasks that would run, in check mode
description: Appends play, host and task of each such task to the file KUBESTRATA_WOULD_RUN names.
"""

# What Ansible's command module says in check mode when it would run.
WOULD_RUN = "Command would have run if not in check mode"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubestrata_would_run"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.play = ""

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()

    def v2_runner_on_skipped(self, result):
        if result._result.get("msg") != WOULD_RUN or "KUBESTRATA_WOULD_RUN" not in os.environ:
            return
        line = {"play": self.play, "host": result._host.get_name(), "task": result._task.name or result._task.action}
        with open(os.environ["KUBESTRATA_WOULD_RUN"], "a") as out:
            out.write(json.dumps(line) + "\n")
