"""Debian's archive as kubestrata uses it on the host: a private apt configuration per suite.

The private configuration (own sources list, lists and cache directories under the
kubestrata cache) lets the host download packages for nodes and tests (from trixie, the nodes'
suite, or sid for newer versions) without touching the host's own apt setup.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubestrata.cachedir import locked
from kubestrata.paths import CACHE_DIR
from kubestrata.shell import run

SUITE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def archive_url() -> str:
    return os.environ.get("KUBESTRATA_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def apt_options(suite: str = SUITE, status_file: Path | None = None) -> list[str]:
    """apt-get options for suite with all state in the cache; status_file says what is installed
    (a node rootfs's dpkg status), none means nothing is."""
    base = CACHE_DIR / "apt" / suite
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache").mkdir(parents=True, exist_ok=True)
    sources = base / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {archive_url()} {suite} main\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={base / 'lists'}",
        "-o", f"Dir::Cache={base / 'cache'}",
        "-o", f"Dir::State::status={status_file or '/dev/null'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]


def _suite_locked(suite: str):
    """One apt run at a time on a suite's lists and cache: apt's own locks are off (the state
    lives in the cache), and two updates at once leave lists apt then takes for unsigned."""
    return locked(CACHE_DIR / "apt" / suite)


def _update(suite: str) -> list[str]:
    options = apt_options(suite)
    run(["apt-get", *options, "-qq", "update"], timeout=600)
    return options


def download(packages: list[str], into: Path, *, suite: str = SUITE,
             status_file: Path | None = None) -> None:
    """Download packages and every dependency status_file does not already have."""
    with _suite_locked(suite):
        _update(suite)
        (into / "partial").mkdir(parents=True, exist_ok=True)
        run(["apt-get", *apt_options(suite, status_file), "-o", f"Dir::Cache::archives={into}",
             "-y", "-qq", "--download-only", "install", *packages], timeout=1200)


def fetch(package: str, into: Path, *, suite: str = SUITE) -> Path:
    """Download one package's .deb alone (no dependencies) into a directory; its path."""
    with _suite_locked(suite):
        options = _update(suite)
        into.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", *options, "-qq", "download", package], cwd=into, check=True,
                       capture_output=True, timeout=600)
    return sorted(into.glob(f"{package}_*.deb"))[-1]
