"""Running playbooks through ansible-runner, with progress people can follow.

One line per layer (a play): hosts that finished it, what changed, how long it took; a failure
shows host, task and the module's message, not a wall of JSON. ``verbose`` streams Ansible's
own output instead. Every run keeps its events and output under ``.kubestrata/runs/``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kubestrata.paths import PROJECT_ROOT, STATE_DIR

RUNS_DIR = STATE_DIR / "runs"
# How ansible-runner says a run ended, besides "successful" and "failed" (a run that finished).
UNFINISHED = {"timeout": "ansible-runner stopped it: it ran past its timeout",
              "canceled": "it was canceled", "error": "ansible-runner could not run it"}


# Check mode: the command tasks that would run, from ansible_plugins/callback/kubestrata_would_run.
CALLBACK_DIR = Path(__file__).parent / "ansible_plugins" / "callback"


@dataclass
class Failure:
    host: str
    task: str
    message: str

    def __str__(self) -> str:
        return f"{self.host} | {self.task} | {self.message}"


@dataclass
class Layer:
    name: str
    started: float
    hosts: set[str] = field(default_factory=set)
    changed_hosts: set[str] = field(default_factory=set)
    changes: int = 0
    failed_hosts: set[str] = field(default_factory=set)
    seconds: float = 0.0
    changed_tasks: list[tuple[str, str]] = field(default_factory=list)     # (host, task)

    def line(self) -> str:
        done = len(self.hosts - self.failed_hosts)
        mark = "FAILED" if self.failed_hosts else "ok"
        changed = f"{self.changes} changes on {len(self.changed_hosts)} hosts" if self.changes \
            else "no changes"
        hosts = f"{done}/{len(self.hosts)} hosts"
        return f"  {mark:<6} {hosts:>11}  {changed:<24} {self.seconds:6.1f} s  {self.name}"


@dataclass
class Result:
    ok: bool
    run_dir: Path
    layers: list[Layer]
    failures: list[Failure]
    changes: int
    unfinished: str = ""        # why the playbook did not run to its end, when it did not


def _one_line(value) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 400 else text[:400] + " ..."


def _message(res: dict) -> str:
    """The module's message; for a command that failed, with its exit code and the last line it
    wrote (stderr's, else stdout's): "non-zero return code" alone says nothing."""
    for key in ("msg", "stderr", "reason", "module_stderr"):
        value = res.get(key)
        if value:
            break
    else:
        return "failed without a message (run with --verbose for Ansible's output)"
    if key == "msg" and "rc" in res:
        said = [line for line in (res.get("stderr") or res.get("stdout") or "").splitlines()
                if line.strip()]
        value = f"{value} {res['rc']}" + (f": {said[-1]}" if said else "")
    return _one_line(value)


class Progress:
    """An ansible-runner event handler that prints a line as each layer ends."""

    def __init__(self, out=print, verbose: bool = False, clock=time.monotonic, status=None,
                 would_run: Path | None = None):
        self.out = out
        self.would_run = would_run      # check mode: where the callback lists commands that would run
        self._would_run_read = 0
        self.status = status        # shows the running layer until its line is printed (a TTY)
        self.verbose = verbose
        self.clock = clock
        self.layers: list[Layer] = []
        self.failures: list[Failure] = []
        self.changes = 0

    @property
    def current(self) -> Layer | None:
        return self.layers[-1] if self.layers and not self.layers[-1].seconds else None

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if self.verbose and event.get("stdout"):
            self.out(event["stdout"])
        if kind == "playbook_on_play_start":
            self._finish()
            self.layers.append(Layer(data.get("play") or data.get("name") or "play", self.clock()))
            if self.status and not self.verbose:
                self.status(f"  ...    {self.layers[-1].name}")
        elif kind.startswith("runner_on_") and self.current and data.get("host"):
            self._record(kind, data, event.get("stdout", ""))
        elif kind == "playbook_on_stats":
            self._finish()
        return True

    def _record(self, kind: str, data: dict, stdout: str) -> None:
        layer = self.current
        host = data["host"]
        layer.hosts.add(host)
        res = data.get("res") or {}
        # A no_log task's result is censored, changed included; Ansible's line still says it.
        censored_change = "censored" in res and "changed: [" in stdout
        if kind == "runner_on_ok" and (res.get("changed") or censored_change):
            self._change(host, data.get("task", "?"))
        elif (kind == "runner_on_failed" and not data.get("ignore_errors")) \
                or kind == "runner_on_unreachable":
            layer.failed_hosts.add(host)
            failure = Failure(host, data.get("task", "?"), _message(res))
            self.failures.append(failure)
            self.out(f"  FAILED {failure}")

    def _change(self, host: str, task: str) -> None:
        layer = self.current
        layer.changes += 1
        layer.changed_hosts.add(host)
        layer.changed_tasks.append((host, task))
        self.changes += 1

    def _commands_that_would_run(self) -> None:
        """Check mode: the play's commands that would run count as its changes."""
        if not (self.would_run and self.would_run.exists()):
            return
        with open(self.would_run) as listed:
            listed.seek(self._would_run_read)
            for line in listed:
                task = json.loads(line)
                self.current.hosts.add(task["host"])
                self._change(task["host"], task["task"])
            self._would_run_read = listed.tell()

    def _finish(self) -> None:
        layer = self.current
        if layer is not None:
            self._commands_that_would_run()
            layer.seconds = max(self.clock() - layer.started, 0.001)
            if not self.verbose:
                self.out(layer.line())


def play_layers(playbook: Path) -> dict[str, str]:
    """Play name -> its layer (the play's first tag), through every import_playbook."""
    import yaml

    layers: dict[str, str] = {}
    for play in yaml.safe_load(playbook.read_text()) or []:
        imported = play.get("ansible.builtin.import_playbook")
        if imported:
            layers.update(play_layers(playbook.parent / imported))
        elif play.get("tags"):
            tags = play["tags"]
            layers[play["name"]] = tags if isinstance(tags, str) else tags[0]
    return layers


def finished_layers(result: Result, playbook: Path) -> list[str]:
    """The layers whose plays all ran without a failure before the run's first failed play."""
    names = play_layers(playbook)
    done: list[str] = []
    for layer in result.layers:
        name = names.get(layer.name)
        if layer.failed_hosts:
            return [d for d in done if d != name]
        if name and name not in done:
            done.append(name)
    return done


def ran_layers(result: Result, playbook: Path) -> list[str]:
    """The layers with a play that ran on some host (a --limit leaves plays without hosts)."""
    names = play_layers(playbook)
    return list(dict.fromkeys(names[layer.name] for layer in result.layers
                              if layer.hosts and layer.name in names))


def new_run_dir(command: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = RUNS_DIR / f"{stamp}-{command}"
    run_dir.mkdir(parents=True, mode=0o700)
    return run_dir


STRATEGY_SWITCH = "KUBESTRATA_ANSIBLE_STRATEGY"


def strategy_env() -> dict[str, str]:
    """Mitogen's strategy (one Python interpreter per node, kept for the whole run: a no-op
    re-run of every layer on all-in-one takes 23 s instead of 51 s), unless the switch says
    `linear`, Ansible's own, or ansible_mitogen is not installed."""
    if os.environ.get(STRATEGY_SWITCH, "mitogen_linear") == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    try:
        import ansible_mitogen
    except ImportError:
        return {"ANSIBLE_STRATEGY": "linear"}
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def run(playbook: Path, inventory: Path, *, tags: list[str] | None = None,
        extravars: dict | None = None, limit: str | None = None, verbose: bool = False,
        out=print, status=None, run_dir: Path | None = None, check: bool = False) -> Result:
    """Run a playbook against inventory; a failed play is reported in the result, not raised.
    check: Ansible's check mode, which changes nothing and reports what it would change."""
    import ansible_runner

    run_dir = run_dir or new_run_dir(playbook.stem)
    with open(run_dir / "progress.log", "a") as log:
        def emit(line: str) -> None:
            out(line)
            log.write(line + "\n")
            log.flush()

        would_run = run_dir / "would-run.jsonl" if check else None
        progress = Progress(out=emit, verbose=verbose, status=status, would_run=would_run)
        plan_env = {"ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
                    "ANSIBLE_CALLBACKS_ENABLED": "kubestrata_would_run",
                    "KUBESTRATA_WOULD_RUN": str(would_run)} if check else {}
        venv_bin = str(Path(sys.executable).parent)
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            project_dir=str(PROJECT_ROOT),
            playbook=str(playbook),
            inventory=str(inventory),
            tags=",".join(tags) if tags else None,
            extravars=extravars or {},
            limit=limit,
            cmdline="--check" if check else None,
            # ansible-runner turns host key checking off unless told: Ansible would then put
            # StrictHostKeyChecking=no before the inventory's own options, and ssh keeps the first.
            envvars={"PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
                     "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
                     "ANSIBLE_HOST_KEY_CHECKING": "True", **strategy_env(), **plan_env},
            event_handler=progress,
            quiet=True,
            suppress_env_files=True,      # extravars stay out of files in the run directory
        )
        unfinished = _unfinished(runner.status)
        if unfinished:
            emit(f"  the playbook did not finish: {unfinished}; see {run_dir / 'artifacts'} "
                 "for its output")
    ok = runner.status == "successful" and not progress.failures
    return Result(ok, run_dir, progress.layers, progress.failures, progress.changes, unfinished)


def _unfinished(status: str) -> str:
    """Why a run with this ansible-runner status did not finish ("" when it did)."""
    if status in ("successful", "failed"):
        return ""
    return UNFINISHED.get(status, f"ansible-runner ended with status {status}")
