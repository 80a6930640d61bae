"""Helpers of the etcd and HA endpoint checks (the fixtures every layer's checks share are in
tests/conftest.py)."""

import json
import shlex
from pathlib import Path

import yaml

from tests.layers.remote import eventually

TLS_PROBE = (Path(__file__).parent / "tls_probe.py").read_text()
ROLE_DEFAULTS = yaml.safe_load(
    (Path(__file__).parents[3] / "roles" / "etcd" / "defaults" / "main.yml").read_text())


def setting(member: dict, name: str):
    """An etcd role setting as the inventory gives it, else the role's default."""
    return member.get(name, ROLE_DEFAULTS[name])


def etcdctl(host, arguments: str, endpoint: str | None = None):
    """etcdctl on a member as the health-check client (the role's /etc/etcd/etcdctl.env),
    talking to that member or to endpoint; asked again for a while when it fails."""
    override = f"ETCDCTL_ENDPOINTS={endpoint} " if endpoint else ""
    return eventually(lambda: host.run(
        f"set -a; . /etc/etcd/etcdctl.env; set +a; {override}etcdctl {arguments}"))


def last_line(text: str) -> str:
    """etcdctl's error: the last line of what it printed, after its client's JSON warnings."""
    return (text.strip().splitlines() or ["no output"])[-1]


def etcdctl_json(host, arguments: str):
    """etcdctl's JSON answer; what it said instead when it has none."""
    result = etcdctl(host, f"{arguments} -w json")
    assert result.rc == 0, f"etcdctl {arguments}: {last_line(result.stderr)}"
    return json.loads(result.stdout)


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
