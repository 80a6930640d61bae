"""Entries of the kubestrata cache that are built once and trusted only when whole.

An entry is a directory built under a temporary name, sealed with a SHA256SUMS file of every file
in it, then renamed into place. A reader trusts an entry only when every sum matches: an entry
left by an interrupted build, a full disk or a changed file is rebuilt, never used. Builders hold
an exclusive lock on the entry's parent, so two builds at once do not trample each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kubestrata import locks

SUMS = "SHA256SUMS"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != SUMS)


def seal(directory: Path) -> None:
    """Write SHA256SUMS (last: its presence means the entry is whole)."""
    lines = [f"{sha256(p)}  {p.relative_to(directory)}\n" for p in _files(directory)]
    (directory / SUMS).write_text("".join(lines))


def entry_is_complete(directory: Path) -> bool:
    sums = directory / SUMS
    if not sums.is_file():
        return False
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {str(p.relative_to(directory)) for p in _files(directory)}
    if present != set(listed):
        return False
    return all(sha256(directory / name) == digest for name, digest in listed.items())


def locked(parent: Path):
    """Hold the exclusive build lock of the cache folder parent (waiting for it)."""
    return locks.waiting(parent / ".lock")
