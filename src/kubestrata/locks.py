"""Exclusive locks on a file (flock): one process holds one at a time, and the kernel drops it
when that process ends, however it ends."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class Busy(Exception):
    pass


@contextmanager
def waiting(path: Path):
    """Hold the lock of path, waiting while another process holds it."""
    with _opened(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def exclusive(path: Path, what: str, command: str):
    """Hold the lock of path for command (what: what it guards, e.g. "lab all-in-one"). While
    another process holds it, raise Busy at once, naming that process and its command."""
    with _opened(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{what} is busy: {_holder(handle)} holds it; "
                       "wait for it or stop it") from None
        _record(handle, f"{os.getpid()} {command}")
        try:
            yield
        finally:
            _record(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _opened(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:     # not "w": that would erase the holder's record
        yield handle


def _record(handle, text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


def _holder(handle) -> str:
    """`COMMAND` (pid PID) of the record the holder left, or what can be said without it."""
    handle.seek(0)
    pid, _, command = handle.read().strip().partition(" ")
    return f"`{command}` (pid {pid})" if command else "another kubestrata command"
