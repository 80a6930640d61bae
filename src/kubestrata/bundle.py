"""`kubestrata bundle`: the offline install source of the Kubernetes layer, built on a machine
with internet access and carried to nodes that have none.

A bundle is a directory: a flat apt repository (kubelet, kubeadm, kubectl at the topology's
version and their helpers cri-tools and kubernetes-cni, from pkgs.k8s.io), the control-plane
images (and the pod network's) as OCI archives under images/, the Tigera operator manifest
under manifests/ for calico, and bundle.json listing all of it with sha256 sums. Serve it over
HTTP or copy it to every node, then run the layer with kube_install_source=offline.

Planning (which repository, packages, images, manifests) reads the topology and the roles'
defaults and touches nothing. Building first asks the repository and the registry whether they
answer, and writes nothing when they do not.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import yaml

from kubestrata.paths import PROJECT_ROOT
from kubestrata.shell import require, run
from kubestrata.topology import Topology

ROLES = PROJECT_ROOT / "roles"
REGISTRY_URL = "https://registry.k8s.io"
HELPER_PACKAGES = ("cri-tools", "kubernetes-cni")     # dependencies of kubelet and kubeadm
CALICO_IMAGES = ("node", "cni", "kube-controllers", "typha", "pod2daemon-flexvol", "csi",
                 "node-driver-registrar", "apiserver")
CHECK_TIMEOUT = 10.0


class BundleError(Exception):
    pass


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


@dataclass(frozen=True)
class Plan:
    kubernetes_version: str
    arch: str
    repo_url: str
    registry_url: str
    packages: tuple[str, ...]
    images: tuple[str, ...]                       # besides kubeadm's own list
    manifests: dict[str, str] = field(default_factory=dict)    # file name -> URL

    @property
    def key_url(self) -> str:
        return self.repo_url + "Release.key"

    @property
    def probes(self) -> list[tuple[str, tuple[int, ...]]]:
        """What must answer before anything is written (the registry answers 401 without a token)."""
        return [(self.repo_url + "InRelease", (200,)), (self.registry_url + "/v2/", (200, 401))]


def plan(topology: Topology, arch: str = "amd64", repo_base: str | None = None,
         registry_url: str = REGISTRY_URL) -> Plan:
    """What a bundle for this topology holds (no network, no files)."""
    version = topology.versions["kubernetes"]
    minor = ".".join(version.split(".")[:2])
    base = (repo_base or _defaults("kube")["kube_upstream_repo_base"]).rstrip("/")
    cni, shared = _defaults("cni"), _defaults("cluster_defaults")
    images: tuple[str, ...] = ()
    manifests: dict[str, str] = {}
    if topology.cni == "flannel":
        images = (f"docker.io/flannel/flannel:{cni['cni_flannel_version']}",
                  f"docker.io/flannel/flannel-cni-plugin:{cni['cni_flannel_cni_plugin_version']}")
    elif topology.cni == "calico":
        calico = shared["cni_calico_version"]
        images = tuple(f"docker.io/calico/{name}:{calico}" for name in CALICO_IMAGES)
        operator = jinja2.Template(shared["cni_calico_operator_url"])
        manifests = {"tigera-operator.yaml": operator.render(cni_calico_version=calico)}
    return Plan(kubernetes_version=version, arch=arch, repo_url=f"{base}/v{minor}/deb/",
                registry_url=registry_url.rstrip("/"),
                packages=tuple(_defaults("kube_packages")["kube_packages_names"]),
                images=images, manifests=manifests)


def control_plane_images(kubeadm_list: str) -> list[str]:
    """`kubeadm config images list` output without etcd: kubestrata runs etcd outside pods."""
    return [line.strip() for line in kubeadm_list.splitlines()
            if line.strip() and not re.search(r"/etcd:", line)]


def manifest_images(manifest: str) -> list[str]:
    """The images a manifest names (the operator image of tigera-operator.yaml)."""
    return sorted(set(re.findall(r"^\s*image:\s*['\"]?([^\s'\"]+)", manifest, re.M)))


def check_reachable(p: Plan, timeout: float = CHECK_TIMEOUT) -> None:
    """Raise BundleError naming the address when the repository or the registry do not answer."""
    for url, good in p.probes:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise BundleError(f"cannot reach {url} ({reason}); `kubestrata bundle` runs on a "
                              "machine with access to the Kubernetes package repository and "
                              "registry (or give --repo-base of a mirror); nothing was written") \
                from None
        if status not in good:
            raise BundleError(f"{url} answered HTTP {status}, not {' or '.join(map(str, good))}; "
                              "is that the Kubernetes package repository (--repo-base)? "
                              "nothing was written")


def build(p: Plan, out: Path, log=print) -> Path:
    """Download everything the plan names into out (which must not exist yet); bundle.json's path."""
    if out.exists():
        raise BundleError(f"{out} exists; give a new directory")
    check_reachable(p)
    require({"apt-get": "apt", "dpkg-deb": "dpkg", "dpkg-scanpackages": "dpkg-dev",
             "skopeo": "skopeo", "gzip": "gzip"})
    building = out.with_name(out.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    (building / "images").mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="kubestrata-bundle-") as scratch:
        apt = _private_apt(p, Path(scratch))
        log(f"packages from {p.repo_url}")
        packages = _download_packages(p, apt, building)
        kubeadm = _unpack_kubeadm(building, packages, Path(scratch))
        listed = run([str(kubeadm), "config", "images", "list",
                      "--kubernetes-version", f"v{p.kubernetes_version}"]).stdout
        manifests = _download_manifests(p, building)
        images = control_plane_images(listed) + list(p.images)
        for manifest in manifests:
            images += manifest_images((building / manifest["file"]).read_text())
        exported = [_export_image(p, name, building, log) for name in images]
    index = {
        "format": 1,
        "kubernetes_version": p.kubernetes_version,
        "arch": p.arch,
        "repository": p.repo_url,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": packages,
        "images": exported,
        "manifests": manifests,
    }
    (building / "bundle.json").write_text(json.dumps(index, indent=2) + "\n")
    building.rename(out)
    return out / "bundle.json"


def _private_apt(p: Plan, scratch: Path) -> list[str]:
    """apt-get options that see only the Kubernetes repository, with all state in scratch."""
    key = scratch / "kubernetes.asc"
    with urllib.request.urlopen(p.key_url, timeout=60) as answer:
        key.write_bytes(answer.read())
    (scratch / "sources.list").write_text(f"deb [signed-by={key}] {p.repo_url} /\n")
    for sub in ("lists/partial", "cache/archives/partial"):
        (scratch / sub).mkdir(parents=True)
    options = ["-o", f"Dir::Etc::SourceList={scratch / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={scratch / 'lists'}",
               "-o", f"Dir::Cache={scratch / 'cache'}",
               "-o", "Dir::State::status=/dev/null",
               "-o", f"APT::Architecture={p.arch}", "-o", f"APT::Architectures={p.arch}",
               "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]
    run(["apt-get", *options, "-qq", "update"], timeout=600)
    return options


def _download_packages(p: Plan, apt: list[str], into: Path) -> list[dict]:
    """The pinned packages (the Debian revision matching the version) and the helpers' newest."""
    wanted = []
    for name in p.packages:
        offered = run(["apt-cache", *apt, "madison", name]).stdout
        versions = [line.split("|")[1].strip() for line in offered.splitlines() if "|" in line]
        matching = [v for v in versions if re.match(rf"^{re.escape(p.kubernetes_version)}-", v)]
        if not matching:
            raise BundleError(f"{p.repo_url} has no {name} {p.kubernetes_version} "
                              f"(it offers {', '.join(versions) or 'none'})")
        wanted.append(f"{name}={matching[0]}")
    subprocess.run(["apt-get", *apt, "-qq", "download", *wanted, *HELPER_PACKAGES], cwd=into,
                   check=True, capture_output=True, timeout=1200)
    scanned = subprocess.run(["dpkg-scanpackages", "-m", ".", "/dev/null"], cwd=into,
                             capture_output=True, text=True, check=True).stdout
    (into / "Packages").write_text(scanned)
    run(["gzip", "--keep", "--force", str(into / "Packages")])
    return [{"name": deb.name.split("_")[0], "version": deb.name.split("_")[1],
             "file": deb.name, "sha256": _sha256(deb)} for deb in sorted(into.glob("*.deb"))]


def _unpack_kubeadm(bundle: Path, packages: list[dict], scratch: Path) -> Path:
    deb = next(bundle / p["file"] for p in packages if p["name"] == "kubeadm")
    run(["dpkg-deb", "--extract", str(deb), str(scratch / "kubeadm")])
    return scratch / "kubeadm" / "usr" / "bin" / "kubeadm"


def _download_manifests(p: Plan, bundle: Path) -> list[dict]:
    found = []
    for name, url in p.manifests.items():
        target = bundle / "manifests" / name
        target.parent.mkdir(exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as answer:
            target.write_bytes(answer.read())
        found.append({"name": name, "file": f"manifests/{name}", "url": url,
                      "sha256": _sha256(target)})
    return found


def _export_image(p: Plan, name: str, bundle: Path, log) -> dict:
    file = "images/" + re.sub(r"[/:@]", "_", name) + ".tar"
    log(f"image {name}")
    run(["skopeo", "copy", "--quiet", "--override-os", "linux", "--override-arch", p.arch,
         f"docker://{name}", f"oci-archive:{bundle / file}:{name}"], timeout=1800)
    return {"name": name, "file": file, "sha256": _sha256(bundle / file)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
