"""Helpers of the etcd and HA endpoint checks (the fixtures every layer's checks share are in
tests/conftest.py)."""

import shlex
from pathlib import Path

TLS_PROBE = (Path(__file__).parent / "tls_probe.py").read_text()


def etcdctl(host, arguments: str, endpoint: str | None = None):
    """etcdctl on a member as the health-check client (the role's /etc/etcd/etcdctl.env),
    talking to that member or to endpoint."""
    override = f"ETCDCTL_ENDPOINTS={endpoint} " if endpoint else ""
    return host.run(f"set -a; . /etc/etcd/etcdctl.env; set +a; {override}etcdctl {arguments}")


def owners_and_modes(host, paths) -> dict[str, tuple[str, str, int]]:
    """path -> (user, group, mode) for each existing path, read with one command."""
    out = host.run(f"stat -c '%U %G %a %n' {shlex.join(paths)}").stdout
    found = {}
    for line in out.splitlines():
        user, group, mode, path = line.split(" ", 3)
        found[path] = (user, group, int(mode, 8))
    return found


def tls_get_version(host, address: str, port: int, ca: str, cert: str = "-", key: str = "-",
                    server_name: str | None = None):
    """GET /version from address:port over TLS, run on host; rc 0 and the body when served."""
    args = [address, str(port), ca, cert, key, server_name or address]
    return host.run(f"python3 -c {shlex.quote(TLS_PROBE)} {shlex.join(args)}")
