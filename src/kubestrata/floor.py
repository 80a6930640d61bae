"""The raw floor under a layer: the end state it made on each node, made again by a plain
script over one SSH connection (the floor of its first run), or checked by one (the floor of
its no-op re-run).

What a layer made is read from the events of its run, never from the roles: the packages its
apt tasks installed, the files its file-writing tasks changed (a directory comes with the files
and links directly in it: keys copied under no_log, links a command made; its subdirectories
are a service's data), the trees unarchive filled, the sysctl files applied, and the services
its systemd tasks named (enabled, masked, running). The files themselves are taken from the
benchmarked nodes, a gzipped tarball per node and layer; the check's hashes, modes and owners
come from those tarballs. Every script is bash, run as root.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Modules that write the file (or directory) at their dest or path.
FILE_MODULES = {"copy", "template", "file", "get_url", "lineinfile", "blockinfile", "replace"}
SERVICE_MODULES = {"systemd_service", "systemd", "service"}
RUNNING = {"started": True, "restarted": True, "reloaded": True, "stopped": False}


@dataclass
class Service:
    enabled: bool | None = None
    masked: bool | None = None
    running: bool | None = None

    def update(self, other: Service) -> None:
        for name in ("enabled", "masked", "running"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))


@dataclass
class Work:
    """What one layer made on one node."""
    packages: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)        # files, or directories with their files
    trees: set[str] = field(default_factory=set)        # directories with everything below
    sysctl_files: set[str] = field(default_factory=set)
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def files(self) -> bool:
        return bool(self.paths or self.trees)

    def update(self, other: Work) -> None:
        """Adds what other made after this (its service states win)."""
        self.packages |= other.packages
        self.paths |= other.paths
        self.trees |= other.trees
        self.sysctl_files |= other.sysctl_files
        for name, service in other.services.items():
            self.services.setdefault(name, Service()).update(service)


@dataclass(frozen=True)
class Entry:
    """A file, directory or link as captured: what the no-op check compares."""
    path: str
    mode: int
    owner: str                  # user:group
    sha256: str | None = None   # regular files
    link: str | None = None     # symbolic links: the target


def read_events(run_dir: Path) -> list[dict]:
    """The events ansible-runner kept of a run, in order."""
    events = [json.loads(path.read_text())
              for path in run_dir.glob("artifacts/*/job_events/*.json")]
    return sorted(events, key=lambda event: event["counter"])


def layer_work(events: list[dict], play_layers: dict[str, str],
               addresses: dict[str, str]) -> dict[str, dict[str, Work]]:
    """Layer -> node -> what the layer made there, from a run's task results: a loop's item
    by item (the events of its items; its summary lacks where each was delegated). A result
    delegated to another node counts for it (addresses: node address -> node); one delegated
    to the controller counts for no node."""
    work: dict[str, dict[str, Work]] = defaultdict(lambda: defaultdict(Work))
    for event in events:
        data = event.get("event_data", {})
        result = data.get("res") or {}
        if data.get("play") not in play_layers or not (
                event.get("event") == "runner_item_on_ok" or
                (event.get("event") == "runner_on_ok" and "results" not in result)):
            continue
        delegated = result.get("_ansible_delegated_vars")
        node = addresses.get(str(delegated.get("ansible_host"))) if delegated else data["host"]
        # A no_log result hides its paths: the directory it wrote into brings its files.
        if node and "censored" not in result:
            module = data.get("resolved_action", "").rsplit(".", 1)[-1]
            _record(work[play_layers[data["play"]]][node], module, result)
    return {layer: dict(nodes) for layer, nodes in work.items()}


def _record(work: Work, module: str, result: dict) -> None:
    args = (result.get("invocation") or {}).get("module_args") or {}
    if module in SERVICE_MODULES and args.get("name"):
        # Every service a task named, changed or not: a package may have enabled it already.
        work.services.setdefault(args["name"], Service()).update(
            Service(args.get("enabled"), args.get("masked"), RUNNING.get(args.get("state"))))
    if not result.get("changed"):
        return
    if module == "apt":
        names = args.get("name") or []
        work.packages.update(name.split("=")[0] for name in ([names] if isinstance(names, str)
                                                             else names))
    elif module == "unarchive":
        work.trees.add(args["dest"])
    elif module == "sysctl":
        work.paths.add(args["sysctl_file"])
        work.sysctl_files.add(args["sysctl_file"])
    elif module in FILE_MODULES and result.get("state") != "absent":
        work.paths.add(result.get("dest") or result.get("path") or args.get("dest")
                       or args["path"])


def _quoted(paths) -> str:
    return " ".join(shlex.quote(path) for path in sorted(paths))


def versions_script(packages: set[str]) -> str:
    """Prints NAME=VERSION, a line per installed package (read with parse_versions)."""
    return f"dpkg-query -W -f '${{Package}}=${{Version}}\\n' -- {_quoted(packages)}"


def parse_versions(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def capture_script(work: Work) -> str:
    """Writes a gzipped tarball of the files work names to stdout (paths relative to /)."""
    paths = _quoted(path.lstrip("/") for path in work.paths)
    trees = _quoted(path.lstrip("/") for path in work.trees)
    listed = ([f"  printf '%s\\0' {paths}",
               f"  find {paths} -mindepth 1 -maxdepth 1 ! -type d -print0"] if paths else []) \
        + ([f"  find {trees} -print0"] if trees else [])
    # Sorted, a directory comes before what it holds; --no-recursion: only what is listed.
    return "\n".join(["set -euo pipefail", "cd /", "{", *listed, "} | LC_ALL=C sort -zu \\",
                      "  | tar --null --no-recursion -T - -czf -"])


def entries(tarball: bytes) -> list[Entry]:
    """What a captured tarball holds, by absolute path."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive:
            digest = hashlib.sha256(archive.extractfile(member).read()).hexdigest() \
                if member.isfile() else None
            found.append(Entry("/" + member.name, member.mode, f"{member.uname}:{member.gname}",
                               digest, member.linkname if member.issym() else None))
    return found


POLICY_RC = "/usr/sbin/policy-rc.d"


def replay_script(work: Work, versions: dict[str, str], refresh_index: bool) -> str:
    """Makes what work made, the files read as a tarball from stdin: the packages at their
    versions (package scripts start no service: the services start below, with their files
    in place), the files, the sysctl files applied, the services enabled and (re)started."""
    lines = ["set -euo pipefail", "export DEBIAN_FRONTEND=noninteractive"]
    if work.packages:
        pins = _quoted(f"{name}={versions[name]}" for name in work.packages)
        lines += [f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC}", f"chmod 755 {POLICY_RC}",
                  f"trap 'rm -f {POLICY_RC}' EXIT",
                  *(["apt-get -qq update </dev/null"] if refresh_index else []),
                  f"apt-get -qq install -y --no-install-recommends {pins} </dev/null"]
    if work.files:
        lines.append("tar -C / -xzpf -")
    lines += [f"sysctl -q -p {shlex.quote(path)}" for path in sorted(work.sysctl_files)]
    if work.services:
        lines.append("systemctl daemon-reload")
    services = sorted(work.services.items())
    for command, units in (("mask", [u for u, s in services if s.masked]),
                           ("unmask", [u for u, s in services if s.masked is False]),
                           ("enable", [u for u, s in services if s.enabled]),
                           ("disable", [u for u, s in services if s.enabled is False]),
                           ("restart", [u for u, s in services if s.running]),
                           ("stop", [u for u, s in services if s.running is False])):
        if units:
            lines.append(f"systemctl {command} -- {_quoted(units)}")
    return "\n".join(lines)


def check_script(work: Work, versions: dict[str, str], files: list[Entry]) -> str:
    """Exits 0 when the node has work's packages at these versions, the files with these
    contents, modes, owners and link targets (of a path captured twice, the last), work's
    services enabled or masked and running; otherwise names, on stderr, each kind that differs."""
    lines = ["exec >&2", "status=0",
             'expect() { what=$1 want=$2; shift 2; [ "$("$@" 2>&1)" = "$want" ] '
             '|| { echo "$what differ"; status=1; }; }']

    def expect(what: str, want: list[str], command: str) -> None:
        if want:
            lines.append(f"expect {shlex.quote(what)} {shlex.quote(chr(10).join(want))} {command}")

    expect("package versions", [f"{name}={versions[name]}" for name in sorted(work.packages)],
           versions_script(work.packages))
    files = sorted({entry.path: entry for entry in files}.values(), key=lambda e: e.path)
    expect("modes and owners", [f"{e.mode:o} {e.owner} {e.path}" for e in files],
           f"stat -c '%a %U:%G %n' -- {_quoted(e.path for e in files)}")
    links = [e for e in files if e.link is not None]
    expect("link targets", [e.link for e in links], f"readlink -- {_quoted(e.path for e in links)}")
    hashed = [f"{e.sha256}  {e.path}" for e in files if e.sha256]
    if hashed:
        lines += ["sha256sum --quiet --strict -c - <<'EOF' || { echo 'file contents differ'; "
                  "status=1; }", *hashed, "EOF"]
    services = sorted(work.services.items())
    enabled = {unit: _enabled(service) for unit, service in services if _enabled(service)}
    expect("services enabled", list(enabled.values()),
           f"systemctl is-enabled -- {_quoted(enabled)}")
    running = {unit: "active" if service.running else "inactive"
               for unit, service in services if service.running is not None}
    expect("services running", list(running.values()), f"systemctl is-active -- {_quoted(running)}")
    return "\n".join(lines + ["exit $status"])


def _enabled(service: Service) -> str | None:
    """What `systemctl is-enabled` says of a service in this state (None: either)."""
    return "masked" if service.masked else {True: "enabled", False: "disabled"}.get(service.enabled)
