"""Running commands on the host, with errors that say what failed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Sequence


class CommandError(Exception):
    pass


def run(cmd: Sequence[str], *, netns: str | None = None, check: bool = True,
        input: str | None = None, timeout: float | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run cmd (in a network namespace if given), capturing its output as text."""
    argv = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, input=input,
                                timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise CommandError(f"{' '.join(cmd)} failed (exit {result.returncode})"
                           + (f": {detail[-1]}" if detail else ""))
    return result


def require(commands: dict[str, str]) -> None:
    """Fail with the apt-get line when any command is missing; commands maps name -> package."""
    missing = {name: pkg for name, pkg in commands.items() if shutil.which(name) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise CommandError(f"missing {', '.join(missing)}; install with: "
                           f"apt-get install -y {packages}")
