"""`kubestrata bundle --from-source`: the offline install source of the Kubernetes layer, built
on this machine from Go modules instead of downloaded from pkgs.k8s.io and registry.k8s.io.

It holds what the downloaded bundle holds, in the same layout, so nodes read it the same way: a
flat apt repository (kubelet, kubeadm, kubectl, cri-tools, kubernetes-cni), signed with a key made
for this cache; the images `kubeadm config images list` names (etcd aside: kubestrata runs etcd
outside pods) as OCI archives under images/; bundle.json listing every file with its sha256.

The bundle is a cache entry keyed by every input (recipes, Go version, the code that assembles
it, the signing key): built once, checked against its sums on every use, rebuilt when damaged.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kubestrata import debpkg, gobuild, images
from kubestrata.bundle import control_plane_images
from kubestrata.cachedir import entry_is_complete, locked, seal, sha256
from kubestrata.paths import CACHE_DIR

LAYOUT = "1"              # bump when the bundle's make-up changes
PAUSE_SOURCE = "build/pause/linux/pause.c"
KUBEADM_CONSTANTS = "cmd/kubeadm/app/constants/constants.go"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# The pod networks whose parts the bundle carries: the reference CNI plugins (bridge). flannel's
# CNI plugin module is not on the Go module proxy here; calico is not built from Go modules.
POD_NETWORKS = ("bridge",)


class SourceBundleError(Exception):
    pass


def companion_version(component: str, kubernetes: str | None = None) -> str:
    """The version of a component built with Kubernetes: its newest recipe (for cri-tools, the
    newest of the same minor version, as upstream releases them together)."""
    versions = gobuild.recipe_versions(component)
    if kubernetes and component == "cri-tools":
        minor = ".".join(kubernetes.split(".")[:2]) + "."
        versions = [v for v in versions if v.startswith(minor)]
    if not versions:
        raise SourceBundleError(
            f"no build recipe for {component}" + (f" {kubernetes[:4]}.x" if kubernetes else "")
            + f": write one with `kubestrata recipe {component} VERSION`")
    return versions[-1]


def kubeadm_coredns_version(version: str) -> str:
    """The CoreDNS version kubeadm deploys, from its constants in the module's source."""
    constants = gobuild.module_source("kubernetes", version) / KUBEADM_CONSTANTS
    found = re.search(r'CoreDNSVersion\s*=\s*"v([^"]+)"', constants.read_text())
    if not found:
        raise SourceBundleError(f"no CoreDNSVersion in {constants}")
    return found.group(1)


def signing_key() -> debpkg.SigningKey:
    return debpkg.ensure_signing_key(CACHE_DIR / "bundle-signing")


def _source_key(version: str, go: str) -> str:
    parts = [LAYOUT, go, version, signing_key().fingerprint]
    for module in (Path(__file__), Path(images.__file__), Path(debpkg.__file__)):
        parts.append(module.read_text())
    built = [("kubernetes", version), ("cri-tools", companion_version("cri-tools", version)),
             ("cni-plugins", companion_version("cni-plugins")), ("imagetool", ""),
             ("coredns", kubeadm_coredns_version(version))]
    parts += [gobuild.build_key(name, ver, go) for name, ver in built]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def path(version: str) -> Path:
    return CACHE_DIR / "bundle" / f"kubernetes-v{version}-{_source_key(version, gobuild.go_version())}"


def ensure(version: str, arch: str = "amd64", *, log=print, verbose: bool = False) -> Path:
    """The bundle directory for Kubernetes version, built unless the cache has it whole."""
    if arch != "amd64":
        raise SourceBundleError(f"bundles built from source are amd64 only (this machine); "
                                f"asked for {arch}")
    gobuild.recipe("kubernetes", version)
    target = path(version)
    with locked(target.parent):
        if entry_is_complete(target):
            log(f"bundle: Kubernetes {version} from the cache ({target})")
            return target
        _build(version, target, log, verbose)
    return target


def _timed(log, what: str, action):
    started = time.monotonic()
    result = action()
    log(f"  {what:<28} {time.monotonic() - started:6.1f} s")
    return result


def _build(version: str, target: Path, log, verbose: bool) -> None:
    log(f"bundle: building Kubernetes {version} from source into {target}")
    shutil.rmtree(target, ignore_errors=True)
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    (building / "images").mkdir(parents=True)
    crictl, cni = companion_version("cri-tools", version), companion_version("cni-plugins")
    go = {name: _timed(log, f"{name} v{ver}",
                       lambda name=name, ver=ver: gobuild.build(name, ver, log=lambda _: None,
                                                                verbose=verbose))
          for name, ver in (("kubernetes", version), ("cri-tools", crictl), ("cni-plugins", cni))}
    listed = subprocess.run([str(go["kubernetes"] / "kubeadm"), "config", "images", "list",
                             "--kubernetes-version", f"v{version}"],
                            capture_output=True, text=True, check=True).stdout
    wanted = control_plane_images(listed)
    coredns = _tag(wanted, "coredns")
    if coredns.lstrip("v") != kubeadm_coredns_version(version):
        raise SourceBundleError(f"kubeadm {version} lists CoreDNS {coredns} but its constants say "
                                f"{kubeadm_coredns_version(version)}")
    go["coredns"] = _timed(log, f"coredns {coredns}", lambda: gobuild.build(
        "coredns", coredns.lstrip("v"), log=lambda _: None, verbose=verbose))
    imagetool = _timed(log, "imagetool", lambda: gobuild.build(
        "imagetool", "", log=lambda _: None, verbose=verbose)) / "imagetool"
    with tempfile.TemporaryDirectory(prefix="kubestrata-bundle-") as scratch:
        pause = _timed(log, f"pause {_tag(wanted, 'pause')}",
                       lambda: _build_pause(version, _tag(wanted, "pause"), Path(scratch)))
        staged = Path(scratch) / "binaries"
        (staged / "cni").mkdir(parents=True)
        for name in ("kubelet", "kubeadm", "kubectl"):
            shutil.copy2(go["kubernetes"] / name, staged / name)
        shutil.copy2(go["cri-tools"] / "crictl", staged / "crictl")
        for plugin in go["cni-plugins"].iterdir():
            if plugin.name != "SHA256SUMS":
                shutil.copy2(plugin, staged / "cni" / plugin.name)
        debs = _timed(log, "packages", lambda: debpkg.build_packages(
            staged, building, {"kubernetes": version, "cri_tools": crictl, "cni_plugins": cni}))
        signing = signing_key()
        _timed(log, "signed repository", lambda: debpkg.write_repository(building, signing))
        shutil.copy(signing.public_key_path, building / "signing-key.asc")
        built = _timed(log, f"{len(wanted)} images", lambda: [
            images.build(image, imagetool, building / "images", Path(scratch), CACHE_DIR / "image-debs")
            for image in _images(wanted, go, pause)])
    index = {
        "format": 2,
        "kubernetes_version": version,
        "arch": "amd64",
        "source": "built from Go modules by kubestrata",
        "components": {"kubernetes": version, "cri-tools": crictl, "cni-plugins": cni,
                       "coredns": coredns.lstrip("v"), "pause": _tag(wanted, "pause")},
        "signing_key": {"file": "signing-key.asc", "fingerprint": signing.fingerprint},
        "packages": [_package_entry(deb) for deb in sorted(debs)],
        "images": [{"name": name, "file": f"images/{archive.name}", "sha256": sha256(archive),
                    "digest": images.manifest_digest(archive)}
                   for name, archive in zip(wanted, built)],
        "manifests": [],
    }
    (building / "bundle.json").write_text(json.dumps(index, indent=2) + "\n")
    seal(building)
    building.rename(target)
    log(f"bundle: {_size(target)} MiB, bundle.json sha256 {sha256(target / 'bundle.json')}")


def _package_entry(deb: Path) -> dict:
    name, version = deb.name.split("_")[:2]
    return {"name": name, "version": version, "file": deb.name, "sha256": sha256(deb)}


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) >> 20


def _tag(names: list[str], image: str) -> str:
    for name in names:
        repository, _, tag = name.rpartition(":")
        if repository.rsplit("/", 1)[-1] == image:
            return tag
    raise SourceBundleError(f"kubeadm's image list names no {image} image: {names}")


def _images(names: list[str], go: dict[str, Path], pause: Path) -> list[images.Image]:
    result = []
    for name in names:
        program = name.rpartition(":")[0].rsplit("/", 1)[-1]
        if program in CONTROL_PLANE:
            result.append(images.Image(name, {f"/usr/local/bin/{program}": go["kubernetes"] / program}))
        elif program == "kube-proxy":
            result.append(images.Image(name, {"/usr/local/bin/kube-proxy": go["kubernetes"] / program},
                                       debian_packages=("iptables", "conntrack")))
        elif program == "coredns":
            result.append(images.Image(name, {"/coredns": go["coredns"] / "coredns"},
                                       entrypoint=("/coredns",)))
        elif program == "pause":
            result.append(images.Image(name, {"/pause": pause}, entrypoint=("/pause",),
                                       user="65535:65535"))
        else:
            raise SourceBundleError(f"kubeadm asks for {name}, which kubestrata cannot build")
    return result


def _build_pause(version: str, tag: str, scratch: Path) -> Path:
    """pause from pause.c in the Kubernetes module, compiled static as upstream's Makefile does."""
    module = gobuild.module_source("kubernetes", version)
    makefile = (module / "build/pause/Makefile").read_text()
    found = re.search(r"^TAG \?= (\S+)", makefile, re.M)
    if not found or found.group(1) != tag:
        raise SourceBundleError(f"kubeadm {version} asks for pause {tag}, but its module's "
                                f"pause.c is {found.group(1) if found else 'unversioned'}")
    if shutil.which("gcc") is None:
        raise SourceBundleError("the pause image is C: install gcc and libc6-dev "
                                "(apt-get install -y gcc libc6-dev)")
    target = scratch / "pause"
    subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-kubestrata",
                    "-o", str(target), str(module / PAUSE_SOURCE)], check=True,
                   capture_output=True, text=True)
    return target
