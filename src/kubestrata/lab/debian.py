"""Debian's archive as the lab uses it: the suite of the nodes and a private apt configuration.

The private configuration (own sources list, lists and cache directories under the
kubestrata cache) lets the host download packages for the nodes without touching the
host's own apt setup.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubestrata.paths import CACHE_DIR
from kubestrata.shell import run

SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def archive_url() -> str:
    return os.environ.get("KUBESTRATA_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def apt_options(status_file: Path) -> list[str]:
    """apt-get options that read a node rootfs's dpkg status and keep all state in the cache."""
    base = CACHE_DIR / "apt" / SUITE
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache").mkdir(parents=True, exist_ok=True)
    sources = base / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {archive_url()} {SUITE} main\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={base / 'lists'}",
        "-o", f"Dir::Cache={base / 'cache'}",
        "-o", f"Dir::State::status={status_file}",
        "-o", "Debug::NoLocking=1",
    ]


def download(packages: list[str], status_file: Path, into: Path) -> None:
    """Download the .debs that packages need beyond what status_file says is installed."""
    options = apt_options(status_file)
    (into / "partial").mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "-qq", "update"], timeout=600)
    run(["apt-get", *options, "-o", f"Dir::Cache::archives={into}", "-y", "-qq",
         "--download-only", "install", *packages], timeout=1200)
