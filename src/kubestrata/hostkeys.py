"""SSH host keys of the machines, made by kubestrata so that they are known before first contact.

One ed25519 key per node, generated once into a private state directory and reused on every
later run, so re-running ``pulumi up`` hands the machines the same keys. Only the private key
is stored; the public half is derived from it. Private keys are never printed: ``HostKey``
leaves them out of its repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kubestrata.topology import Topology


@dataclass(frozen=True)
class HostKey:
    private: str = field(repr=False)     # OpenSSH private key file content
    public: str                          # "ssh-ed25519 AAAA..."


def ensure(directory: Path, names: list[str]) -> dict[str, HostKey]:
    """The host key of each name, generated into directory (mode 0700) when missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return {name: _load_or_create(directory / f"{name}_ed25519") for name in names}


def forget(directory: Path, name: str) -> None:
    """Delete name's key: the next ensure makes a new one (for a new machine of that name)."""
    (directory / f"{name}_ed25519").unlink(missing_ok=True)


def _load_or_create(path: Path) -> HostKey:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        private = path.read_text()
    else:
        private = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()).decode()
        with os.fdopen(fd, "w") as file:
            file.write(private)
    key = serialization.load_ssh_private_key(private.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return HostKey(private=private, public=public)


def known_hosts(topology: Topology, keys: dict[str, HostKey]) -> str:
    """known_hosts lines: each node under its name, its FQDN and its address."""
    lines = []
    for node in topology.nodes:
        names = f"{node.name},{topology.fqdn(node)},{node.address}"
        lines.append(f"{names} {keys[node.name].public}\n")
    return "".join(lines)
