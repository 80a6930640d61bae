"""Lint in CI: ansible-lint's production profile and yamllint pass on the checkout, offline.

Both read their settings from the repository root (.ansible-lint, .yamllint). An intentional
finding is marked where it occurs, `# noqa: rule-id (reason)`, and every mark keeps its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    executable = VENV_BIN / tool
    assert executable.is_file(), f"{tool} is not installed next to {sys.executable} (pip install -e '.[test]')"
    env = dict(os.environ,
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               NO_COLOR="1",
               ANSIBLE_LINT_SKIP_SCHEMA_UPDATE="1")  # with --offline: no schema, version or Galaxy fetch
    return subprocess.run([str(executable), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ansible_lint_production_profile_passes():
    result = _run("ansible-lint", "--offline", "--profile", "production", "--nocolor", "-f", "pep8")
    assert result.returncode == 0, f"ansible-lint found:\n{result.stdout}\n{result.stderr}"


def test_yamllint_passes():
    result = _run("yamllint", "--strict", "-f", "parsable", ".")
    assert result.returncode == 0, f"yamllint found:\n{result.stdout}\n{result.stderr}"


RULE = r"[a-z][a-z0-9-]*(?:\[[a-z0-9-]+\])?"
MARK = re.compile(rf"# noqa:? (?:{RULE} )+\(.+\)$")


def test_every_noqa_keeps_its_reason():
    marks = [(f"{path.relative_to(ROOT)}:{number}", line[line.index("# noqa"):])
             for tree in ("roles", "playbooks", "tests", "topologies")
             for path in sorted((ROOT / tree).rglob("*.y*ml"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if "# noqa" in line]
    assert marks, "no noqa marks found: is the search still right?"
    bare = [f"{where}: {mark}" for where, mark in marks if not MARK.match(mark)]
    assert not bare, "each noqa names its rules, then the reason in parentheses:\n" + "\n".join(bare)
