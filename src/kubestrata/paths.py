"""Where things live: the project tree, per-run state and the machine-wide cache."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY_DIR = PROJECT_ROOT / "topologies"
PLAYBOOK_DIR = PROJECT_ROOT / "playbooks"
TEMPLATE_DIR = PROJECT_ROOT / "templates"
INVENTORY_DIR = PROJECT_ROOT / "inventories"
# The Pulumi project of infra/: Pulumi.yaml (its backend) and the stack files Pulumi.<stack>.yaml.
PULUMI_PROJECT = PROJECT_ROOT
STATE_DIR = Path(os.environ.get("KUBESTRATA_STATE", PROJECT_ROOT / ".kubestrata"))
CACHE_DIR = Path(os.environ.get("KUBESTRATA_CACHE",
                                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                / "kubestrata"))
