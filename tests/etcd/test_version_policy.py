"""The etcd role's version-skew policy (etcd_version_blockers in roles/etcd/vars/main.yml):
one minor version up at a time, never down; evaluated by Ansible itself, no nodes needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from kubestrata.paths import PROJECT_ROOT

# (installed versions, wanted version, the installed versions that forbid it)
CASES = [
    ([], "3.6.0", []),                                  # a new cluster takes any version
    (["3.4.23"], "3.4.30", []),                         # patch upgrade
    (["3.4.23"], "3.5.16", []),                         # one minor up
    (["3.4.23", "3.5.16"], "3.5.16", []),               # an interrupted upgrade, run again
    (["3.4.23"], "3.6.0", ["3.4.23"]),                  # two minors up
    (["3.4.23", "3.5.16"], "3.6.0", ["3.4.23"]),
    (["3.5.16"], "4.0.0", ["3.5.16"]),                  # another major
    (["3.5.16"], "3.4.23", ["3.5.16"]),                 # minor downgrade
    (["3.4.23"], "3.4.22", ["3.4.23"]),                 # patch downgrade
]


def test_version_changes_etcd_does_not_support_are_the_blocked_ones(tmp_path):
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "vars_files": [str(PROJECT_ROOT / "roles" / "etcd" / "vars" / "main.yml")],
        "tasks": [{"name": "Evaluate the policy", "loop": [list(case) for case in CASES],
                   "vars": {"etcd_installed_versions": "{{ item[0] }}",
                            "etcd_version": "{{ item[1] }}"},
                   "ansible.builtin.debug": {"msg": "{{ etcd_version_blockers }}"}}],
    }]
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(play))
    venv_bin = Path(sys.executable).parent
    result = subprocess.run(
        [str(venv_bin / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "policy.yml")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
             "PATH": f"{venv_bin}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    results = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["results"]
    assert [r["msg"] for r in results] == [blocked for _, _, blocked in CASES]
