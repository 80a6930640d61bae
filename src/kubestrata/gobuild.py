"""Go programs built from their modules on the Go module proxy: Kubernetes, crictl, CoreDNS, the
CNI reference plugins, the Pulumi CLI, and kubestrata's own image tool and Pulumi libvirt plugin.

Each component at each version has a recipe: a directory `gobuild/<component>-v<version>/` with a
go.mod of ours that requires the upstream module and lists the programs to build as `tool`
lines, and the go.sum that pins every dependency. Some upstream go.mod files replace modules of
their own repository with local paths (Kubernetes its `k8s.io/*` staging modules, Pulumi's CLI
`../sdk`), which `go install MODULE@VERSION` refuses; the recipe maps each of them to a released
version by the component's rule (`v0.x.y` for Kubernetes, the same version for Pulumi) and keeps
upstream's other replaces as they are. `kubestrata recipe` writes a recipe; builds only read them
(`-mod=readonly`), so what is built is exactly what the go.sum says.

Builds land in the cache, one directory per recipe (keyed by the recipe's text, the Go version
and the build flags), with a SHA256SUMS file written last: an entry without it, or whose sums do
not match, is rebuilt, never used. Go's module and build caches live in the cache too.

The module proxy asked which versions exist is the one go itself uses: the first address in
GOPROXY (the environment's, else `go env GOPROXY`), or proxy.golang.org.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubestrata.cachedir import entry_is_complete, locked, seal
from kubestrata.paths import CACHE_DIR, PROJECT_ROOT

RECIPES = PROJECT_ROOT / "gobuild"
PROXY = "https://proxy.golang.org"
GO_VERSION_MINIMUM = (1, 26)     # Kubernetes 1.36 asks for go 1.26
# Bump when how programs are built changes (flags, environment), so cached builds are redone.
BUILD_LAYOUT = "1"


class GoBuildError(Exception):
    pass


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    programs: tuple[str, ...]            # package paths, relative to the module
    stamp: Callable[[str], list[str]]    # version -> -X flags
    # version -> the version of the modules upstream's go.mod replaces with local paths
    replaced_version: Callable[[str], str] = lambda version: version
    bin_dir: str = ""                    # where the programs go in the built entry
    local: bool = False                  # kubestrata's own program: its source is the recipe
    # a command run in the built programs' directory before the entry is sealed, its first word
    # a program just built (the libvirt plugin writes its Pulumi schema there)
    after_build: tuple[str, ...] = ()

    def recipe_dir(self, version: str) -> Path:
        return RECIPES / (self.name if self.local else f"{self.name}-v{version}")


def _kubernetes_stamp(version: str) -> list[str]:
    major, minor = version.split(".")[:2]
    values = {"gitVersion": f"v{version}", "gitMajor": major, "gitMinor": minor,
              "gitTreeState": "archive", "buildDate": "1970-01-01T00:00:00Z"}
    return [f"-X k8s.io/{package}/version.{key}={value}"
            for package in ("component-base", "client-go/pkg") for key, value in values.items()]


COMPONENTS = {c.name: c for c in (
    Component("kubernetes", "k8s.io/kubernetes",
              tuple(f"cmd/{name}" for name in (
                  "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager",
                  "kube-scheduler", "kube-proxy")),
              _kubernetes_stamp, replaced_version=lambda v: "0." + v.split(".", 1)[1]),
    Component("cri-tools", "sigs.k8s.io/cri-tools", ("cmd/crictl",),
              lambda v: [f"-X sigs.k8s.io/cri-tools/pkg/version.Version=v{v}"]),
    Component("coredns", "github.com/coredns/coredns", ("",),
              lambda v: [f"-X github.com/coredns/coredns/coremain.GitCommit=v{v}"]),
    Component("cni-plugins", "github.com/containernetworking/plugins",
              tuple(f"plugins/{p}" for p in (
                  "main/bridge", "main/host-device", "main/ipvlan", "main/loopback",
                  "main/macvlan", "main/ptp", "main/vlan", "main/dummy", "main/tap",
                  "ipam/host-local", "ipam/static", "ipam/dhcp", "meta/bandwidth",
                  "meta/firewall", "meta/portmap", "meta/sbr", "meta/tuning", "meta/vrf")),
              lambda v: [f"-X github.com/containernetworking/plugins/pkg/utils/buildversion"
                         f".BuildVersion=v{v}"]),
    # laid out as pulumi's installer does: PulumiCommand(root=ENTRY) runs ENTRY/bin/pulumi
    Component("pulumi", "github.com/pulumi/pulumi/pkg/v3", ("cmd/pulumi",),
              lambda v: [f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v{v}"],
              bin_dir="bin"),
    Component("imagetool", "kubestrata.invalid/gobuild/imagetool", ("",), lambda v: [],
              local=True),
    # the Pulumi resource plugin for libvirt (terraform-provider-libvirt behind the bridge), in
    # ENTRY/bin for PATH, with the schema it generates from its own mapping beside it
    Component("pulumi-libvirt", "kubestrata.invalid/gobuild/pulumi-resource-libvirt", ("",),
              lambda v: [], bin_dir="bin", local=True,
              after_build=("pulumi-resource-libvirt", "-write-schema",
                           "pulumi-resource-libvirt.schema.json")),
)}


# ---- the Go toolchain ------------------------------------------------------------------------

def go_environment() -> dict[str, str]:
    """The environment of every go command: caches under the kubestrata cache, no cgo."""
    base = CACHE_DIR / "go"
    return {**os.environ, "GOMODCACHE": str(base / "mod"), "GOCACHE": str(base / "build"),
            "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
            "GOWORK": "off"}


def go_version() -> str:
    """The toolchain's version ("go1.26.8"); a clear error when there is none or it is too old."""
    if shutil.which("go") is None:
        raise GoBuildError(
            "no Go toolchain (`go` is not on PATH): install Go "
            f"{'.'.join(map(str, GO_VERSION_MINIMUM))} or newer from https://go.dev/dl/ "
            "(or Debian's golang-go from trixie-backports), then run this again")
    text = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True,
                          check=True).stdout.strip()
    found = re.match(r"go(\d+)\.(\d+)", text)
    if not found or tuple(map(int, found.groups())) < GO_VERSION_MINIMUM:
        raise GoBuildError(f"Go {text} is too old: Kubernetes needs Go "
                           f"{'.'.join(map(str, GO_VERSION_MINIMUM))} or newer")
    return text


# Builds take every core for minutes: at a lower priority they leave the machine's other work
# (a lab's control plane and its timeouts, above all) the CPU it asks for, and still get every
# cycle nothing else wants.
BUILD_PRIORITY = ["nice", "-n", "10"]


def run_go(args: list[str], cwd: Path, *, verbose: bool = False, timeout: float = 3600,
        env: dict | None = None) -> str:
    process = subprocess.run([*BUILD_PRIORITY, "go", *args], cwd=cwd, env=env or go_environment(), text=True,
                             stdout=None if verbose else subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=timeout)
    if process.returncode != 0:
        output = (process.stdout or "").strip().splitlines()
        raise GoBuildError(f"go {' '.join(args[:2])} in {cwd.name} failed: "
                           + ("\n".join(output[-15:]) if output else "see the output above"))
    return process.stdout or ""


# ---- the proxy ---------------------------------------------------------------------------------

def proxy() -> str:
    """The first address of GOPROXY (environment, else `go env`); PROXY when it names none."""
    setting = os.environ.get("GOPROXY")
    if setting is None and shutil.which("go"):
        setting = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True).stdout
    first = re.split(r"[,|]", setting or "")[0].strip()
    return first.rstrip("/") if first.startswith(("http://", "https://")) else PROXY


def served_versions(module: str) -> list[str]:
    with urllib.request.urlopen(f"{proxy()}/{module}/@v/list", timeout=30) as answer:
        return sorted(answer.read().decode().split(), key=_version_key)


def is_served(module: str, version: str) -> bool:
    try:
        with urllib.request.urlopen(f"{proxy()}/{module}/@v/v{version}.info", timeout=30):
            return True
    except urllib.error.HTTPError:
        return False


def _version_key(version: str) -> tuple:
    numbers = re.findall(r"\d+", version.split("-")[0])
    return tuple(int(n) for n in numbers) + (0 if "-" in version else 1,)


def _require_served(module: str, version: str) -> None:
    if not is_served(module, version):
        offered = [v for v in served_versions(module) if "-" not in v][-8:]
        raise GoBuildError(f"the Go module proxy does not serve {module} v{version}; it serves "
                           f"{', '.join(offered) or 'no release'}: pin one of those")


# ---- recipes ---------------------------------------------------------------------------------

def upstream_go_mod(module: str, version: str) -> str:
    with urllib.request.urlopen(f"{proxy()}/{module}/@v/v{version}.mod", timeout=60) as answer:
        return answer.read().decode()


def upstream_replaces(upstream: str) -> dict[str, str]:
    """The replaces of an upstream go.mod, one line or in a block: module -> what replaces it
    ("./staging/src/k8s.io/api", "../sdk", "github.com/tgummerer/clipboard v0.0.0-...")."""
    found = re.findall(r"^(?:replace[ \t]+|[ \t]+)(\S+)(?:[ \t]+v\S+)?[ \t]+=>[ \t]+(.+?)[ \t]*$",
                       upstream, re.M)
    return dict(found)


def _is_local(target: str) -> bool:
    return target.startswith(("./", "../"))


def local_replaces(upstream: str) -> list[str]:
    """The modules an upstream go.mod replaces with local paths (its own repository's)."""
    return [module for module, target in upstream_replaces(upstream).items() if _is_local(target)]


def recipe_text(component: Component, version: str, upstream: str, local: list[str]) -> str:
    """Our go.mod: upstream's go and godebug lines (so the runtime behaves as upstream's build),
    the module, the locally replaced modules at their released versions, upstream's other
    replaces, and the programs."""
    language = re.findall(r"^(?:go|godebug) .*$", upstream, re.M)
    lines = [f"// kubestrata: {component.name} v{version} built from its Go module; written by",
             "// `kubestrata recipe`, pinned by go.sum. Do not edit by hand.",
             f"module kubestrata.invalid/gobuild/{component.name}", "", *language, "",
             f"require {component.module} v{version}", ""]
    released = f"v{component.replaced_version(version)}"
    replaces = [f"{m} => {m} {released}" for m in local]
    replaces += [f"{m} => {target}" for m, target in upstream_replaces(upstream).items()
                 if not _is_local(target)]
    if replaces:
        lines += ["replace (", *(f"\t{r}" for r in replaces), ")", ""]
    lines += ["tool (", *(f"\t{_package(component, p)}" for p in component.programs), ")"]
    return "\n".join(lines) + "\n"


def write_recipe(name: str, version: str, log=print) -> Path:
    """Write gobuild/<name>-v<version>/ (go.mod and a go.sum made by go mod tidy)."""
    component = _component(name)
    go_version()
    _require_served(component.module, version)
    upstream = upstream_go_mod(component.module, version)
    local = [m for m in local_replaces(upstream)
             if is_served(m, component.replaced_version(version))]
    target = component.recipe_dir(version)
    building = target.with_name(target.name + ".new")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    (building / "go.mod").write_text(recipe_text(component, version, upstream, local))
    env = {**go_environment(), "GOFLAGS": "-mod=mod"}
    run_go(["mod", "tidy"], building, env=env)
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    log(f"wrote {target.relative_to(PROJECT_ROOT)}")
    return target


def _component(name: str) -> Component:
    if name not in COMPONENTS:
        raise GoBuildError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
    return COMPONENTS[name]


def _package(component: Component, program: str) -> str:
    return f"{component.module}/{program}".rstrip("/")


def recipe_versions(name: str) -> list[str]:
    prefix = f"{name}-v"
    return sorted((d.name[len(prefix):] for d in RECIPES.glob(f"{prefix}*") if d.is_dir()),
                  key=_version_key)


def recipe(name: str, version: str) -> Path:
    """The committed recipe of name at version; a clear error naming the ones there are."""
    component = _component(name)
    directory = component.recipe_dir(version)
    if not (directory / "go.sum").is_file() and not component.local:
        have = ", ".join(recipe_versions(name)) or "none"
        raise GoBuildError(
            f"no build recipe for {name} {version} (recipes: {have}); pin one of those, or "
            f"write one with `kubestrata recipe {name} {version}` and commit "
            f"{directory.relative_to(PROJECT_ROOT)}/")
    return directory


# ---- builds ----------------------------------------------------------------------------------

def module_source(name: str, version: str) -> Path:
    """The source of name at version in the module cache (downloaded if need be)."""
    component = _component(name)
    output = run_go(["mod", "download", "-json", f"{component.module}@v{version}"],
                    recipe(name, version))
    return Path(json.loads(output[output.index("{"):])["Dir"])


def build_key(name: str, version: str, go: str) -> str:
    directory = recipe(name, version)
    sources = [p.read_text() for p in sorted(directory.glob("go.*")) + sorted(directory.glob("*.go"))]
    after = COMPONENTS[name].after_build
    text = "|".join([BUILD_LAYOUT, go, *sources, json.dumps(_flags(name, version)),
                     *([json.dumps(after)] if after else [])])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _flags(name: str, version: str) -> list[str]:
    return ["-trimpath", "-ldflags", " ".join(["-s", "-w", *COMPONENTS[name].stamp(version)])]


def build(name: str, version: str, *, log=print, verbose: bool = False) -> Path:
    """The directory holding name's programs at version, built unless the cache has them."""
    go = go_version()
    component = _component(name)
    directory = recipe(name, version)
    label = name if component.local else f"{name}-v{version}"
    target = CACHE_DIR / "gobuild" / f"{label}-{build_key(name, version, go)}"
    with locked(target.parent):
        if entry_is_complete(target):
            return target
        if not component.local:
            _require_served(component.module, version)
        started = time.monotonic()
        building = target.with_name(target.name + ".building")
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        packages = ["."] if component.local else [_package(component, p) for p in component.programs]
        output = building / component.bin_dir
        run_go(["build", *_flags(name, version), "-o", str(output) + "/", *packages],
            directory, verbose=verbose)
        if component.after_build:
            _after_build(component, output)
        seal(building)
        building.rename(target)
        log(f"{label}: built {len(packages)} program(s) in "
            f"{time.monotonic() - started:.0f} s")
    return target


def _after_build(component: Component, programs: Path) -> None:
    program, *args = component.after_build
    try:
        process = subprocess.run([str(programs / program), *args], cwd=programs, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GoBuildError(f"{component.name}: running {program} after the build failed: {exc}")
    if process.returncode != 0:
        output = process.stdout.strip().splitlines()
        raise GoBuildError(f"{component.name}: `{' '.join(component.after_build)}` failed: "
                           + ("\n".join(output[-15:]) or f"exit status {process.returncode}"))
