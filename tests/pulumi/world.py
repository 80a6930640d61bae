"""Pulumi's whole world in a test's tmp_path: HOME, PULUMI_HOME, temporary files, no update
check or plugin download, no ambient credentials, and a PATH without any pulumi or Python
language host (so the CLI built here is the one used); and a user's project directory there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from kubestrata import paths, playbook, pulumi_cli


def isolate(monkeypatch, tmp_path: Path, passphrase: str) -> None:
    for name in ("home", "pulumi-home", "tmp", "project"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", passphrase)
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    monkeypatch.setenv("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN", "PULUMI_ORG_NAME",
                 "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", ":".join(
        d for d in os.environ["PATH"].split(":") if d and not any(
            os.access(Path(d) / tool, os.X_OK) for tool in ("pulumi", pulumi_cli.LANGUAGE_HOST))))


def user_project(tmp_path: Path, monkeypatch, stack: str, config: dict, passphrase: str) -> Path:
    """tmp_path/project as a user's project directory: the checkout's Pulumi.yaml and its
    Pulumi.<stack>.yaml with config on top; kubestrata's state, runs and inventories in tmp_path."""
    isolate(monkeypatch, tmp_path, passphrase)
    project = tmp_path / "project"
    monkeypatch.setattr(paths, "PULUMI_PROJECT", project)
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(paths, "INVENTORY_DIR", tmp_path / "inventories")
    monkeypatch.setattr(playbook, "RUNS_DIR", tmp_path / "state" / "runs")
    shutil.copy(paths.PROJECT_ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    (project / "infra").symlink_to(paths.PROJECT_ROOT / "infra")     # Pulumi.yaml's main
    stack_file = yaml.safe_load((paths.PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())
    stack_file["config"].update(config)
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(stack_file))
    return project
