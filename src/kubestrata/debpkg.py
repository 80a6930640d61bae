"""Debian packages of Kubernetes built from source, shaped like the ones pkgs.k8s.io ships, and a
signed flat apt repository of them.

Nodes install kubelet, kubeadm, kubectl, cri-tools and kubernetes-cni from this repository exactly
as from pkgs.k8s.io: the same names, versions (revision -1.1), dependencies, files, the kubelet's
systemd unit and kubeadm's drop-in, so `apt-mark hold` and upgrades behave the same. Nodes trust
it through one key (`deb [signed-by=/etc/apt/keyrings/kubestrata-bundle.asc] URL ./`), made once
per cache directory and kept there.

Upstream's packaging, followed here: https://github.com/kubernetes/release, directory
cmd/krel/templates/latest/ (Apache-2.0): the <package>/<package>.spec files (files, modes,
Section, kubelet's Requires and Recommends, the sed that points kubeadm's drop-in at
/etc/default/kubelet on Debian) and metadata.yaml (the version-dependent Depends).
templates/debpkg/ holds upstream's kubelet.service, 10-kubeadm.conf (its Debian form) and
kubelet.env unchanged, and maintainer scripts that do on Debian what the kubelet spec's
%systemd_post and %systemd_preun do. Left out: upstream's /usr/share/doc LICENSE and README.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from kubestrata.paths import TEMPLATE_DIR
from kubestrata.shell import require, run

FILES = TEMPLATE_DIR / "debpkg"
REVISION = "1.1"                      # pkgs.k8s.io's Debian revision
MAINTAINER = "kubestrata (built from source) <root@localhost>"
HOMEPAGE = "https://kubernetes.io"
# File times in the packages, so a rebuild of the same binaries is byte-identical.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1577836800"))     # 2020-01-01
OLDEST_KUBERNETES = (1, 28)           # the oldest release metadata.yaml's rules below cover


class DebPkgError(Exception):
    pass


@dataclass(frozen=True)
class Package:
    name: str
    version: str                                    # upstream's, without the revision
    section: str
    summary: str
    files: dict[str, tuple[Path, int]]              # path on the node -> (source, mode)
    keep: tuple[str, ...] = ()                      # empty files that keep a directory
    depends: str = ""
    recommends: str = ""
    conffiles: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()                   # maintainer scripts from FILES/<name>.<script>


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _kubeadm_depends(kubernetes: str) -> str:
    """kubeadm's Depends as upstream's metadata.yaml gives them for this release."""
    if _minor(kubernetes) >= (1, 32):       # kubeadm talks CRI itself (kubernetes/release#3626)
        return ""
    if _minor(kubernetes) >= (1, 30):
        return "cri-tools (>= 1.30.0)"
    return ("kubelet (>= 1.19.0), kubectl (>= 1.19.0), kubernetes-cni (>= 1.2.0), "
            "cri-tools (>= 1.28.0)")


def _packages(binaries: Path, versions: dict) -> list[Package]:
    kubernetes = versions["kubernetes"]
    if _minor(kubernetes) < OLDEST_KUBERNETES:
        raise DebPkgError(f"Kubernetes {kubernetes}: kubestrata packages 1.28 and newer, whose "
                          "dependencies it knows from upstream; pin a newer version")
    plugins = sorted(p for p in (binaries / "cni").iterdir() if p.is_file())
    if not plugins:
        raise DebPkgError(f"{binaries / 'cni'}: no CNI plugins to package")
    return [
        Package("kubelet", kubernetes, "net", "Node agent for Kubernetes clusters",
                {"/usr/bin/kubelet": (binaries / "kubelet", 0o755),
                 "/usr/lib/systemd/system/kubelet.service": (FILES / "kubelet.service", 0o600),
                 "/etc/default/kubelet": (FILES / "kubelet.env", 0o644)},
                keep=("/var/lib/kubelet/.kubelet-keep", "/etc/kubernetes/manifests/.kubelet-keep"),
                depends="kubernetes-cni (>= 1.2.0), mount, util-linux",
                recommends="iptables (>= 1.8.4)",
                conffiles=("/etc/default/kubelet",), scripts=("postinst", "prerm")),
        Package("kubeadm", kubernetes, "admin",
                "Command-line utility for administering a Kubernetes cluster",
                {"/usr/bin/kubeadm": (binaries / "kubeadm", 0o755),
                 "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf":
                     (FILES / "10-kubeadm.conf", 0o644)},
                depends=_kubeadm_depends(kubernetes)),
        Package("kubectl", kubernetes, "admin",
                "Command-line utility for interacting with a Kubernetes cluster",
                {"/usr/bin/kubectl": (binaries / "kubectl", 0o755)}),
        Package("cri-tools", versions["cri_tools"], "admin",
                "Command-line utility for interacting with a container runtime",
                {"/usr/bin/crictl": (binaries / "crictl", 0o755)}),
        Package("kubernetes-cni", versions["cni_plugins"], "net",
                "Binaries required to provision kubernetes container networking",
                {f"/opt/cni/bin/{p.name}": (p, 0o755) for p in plugins},
                keep=("/etc/cni/net.d/.kubernetes-cni-keep",)),
    ]


def build_packages(binaries: Path, out: Path, versions: dict, arch: str = "amd64") -> list[Path]:
    """Package the binaries in `binaries` (kubelet, kubeadm, kubectl, crictl, cni/*) into `out`;
    versions has the keys kubernetes, cri_tools and cni_plugins. Returns the .deb paths."""
    require({"dpkg-deb": "dpkg"})
    out.mkdir(parents=True, exist_ok=True)
    return [_build(package, out, arch) for package in _packages(binaries, versions)]


def _build(package: Package, out: Path, arch: str) -> Path:
    deb = out / f"{package.name}_{package.version}-{REVISION}_{arch}.deb"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        for path, (source, mode) in package.files.items():
            _place(root / path.lstrip("/"), source.read_bytes(), mode)
        for path in package.keep:
            _place(root / path.lstrip("/"), b"", 0o644)
        control = root / "DEBIAN"
        _place(control / "control", _control(package, arch, _installed_kib(root)).encode(), 0o644)
        if package.conffiles:
            _place(control / "conffiles", "".join(f"{c}\n" for c in package.conffiles).encode(),
                   0o644)
        for script in package.scripts:
            _place(control / script, (FILES / f"{package.name}.{script}").read_bytes(), 0o755)
        _normalize(root)
        run(["dpkg-deb", "--build", "--root-owner-group", "-Zgzip", str(root), str(deb)],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}, timeout=600)
    return deb


def _place(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


def _installed_kib(root: Path) -> int:
    """Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, 1 per directory."""
    return sum(-(-p.stat().st_size // 1024) if p.is_file() else 1 for p in root.rglob("*"))


def _control(package: Package, arch: str, installed_kib: int) -> str:
    fields = {
        "Package": package.name,
        "Version": f"{package.version}-{REVISION}",
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_kib),
        "Depends": package.depends,
        "Recommends": package.recommends,
        "Section": package.section,
        "Priority": "optional",
        "Homepage": HOMEPAGE,
        "Description": f"{package.summary}\n Built from source by kubestrata and packaged as "
                       f"pkgs.k8s.io packages {package.name}.",
    }
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value)


def _normalize(root: Path) -> None:
    """Directories 0755 and every time EPOCH, whatever the umask and the clock said."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)


@dataclass(frozen=True)
class SigningKey:
    """A GnuPG key without passphrase in a private GNUPGHOME; only its public half leaves it."""
    home: Path
    fingerprint: str
    public_key_path: Path = field(compare=False)

    def sign(self, release: Path) -> None:
        """Write InRelease (clear-signed) and Release.gpg (detached, armored) next to release."""
        common = ("--local-user", self.fingerprint, "--digest-algo", "SHA512", "--yes")
        try:
            _gpg(self.home, *common, "--clearsign", "--output", str(release.with_name("InRelease")),
                     str(release))
            _gpg(self.home, *common, "--armor", "--detach-sign",
                     "--output", str(release.with_name("Release.gpg")), str(release))
        finally:
            _stop_agent(self.home)


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], timeout=120)


def _stop_agent(home: Path) -> None:
    """gpg starts an agent for the secret key; leave no process behind."""
    run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, timeout=30)


def _secret_fingerprint(home: Path) -> str | None:
    listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    return fingerprints[0] if fingerprints else None


def ensure_signing_key(directory: Path) -> SigningKey:
    """The repository signing key of `directory`, made on first use (one process at a time)."""
    require({"gpg": "gnupg", "gpgconf": "gnupg"})
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / "gnupg"
    with open(directory / ".signing-key.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        home.mkdir(mode=0o700, exist_ok=True)
        home.chmod(0o700)
        try:
            fingerprint = _secret_fingerprint(home) or _generate(home)
        finally:
            _stop_agent(home)
        public_key = directory / "kubestrata-bundle.asc"
        exported = _gpg(home, "--armor", "--export", fingerprint).stdout
        if not public_key.exists() or public_key.read_text() != exported:
            public_key.write_text(exported)
    return SigningKey(home, fingerprint, public_key)


def _generate(home: Path) -> str:
    uid = f"kubestrata bundle signing key ({socket.gethostname()})"
    _gpg(home, "--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never")
    return _secret_fingerprint(home)


def write_repository(repo: Path, signing: SigningKey) -> None:
    """Index and sign the .debs in `repo` as a flat repository (apt source `URL ./`)."""
    require({"dpkg-scanpackages": "dpkg-dev"})
    packages = subprocess.run(["dpkg-scanpackages", "-m", ".", "/dev/null"], cwd=repo,
                              capture_output=True, text=True, check=True).stdout
    if not packages:
        raise DebPkgError(f"{repo}: no .deb files to index")
    (repo / "Packages").write_text(packages)
    (repo / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
    (repo / "Release").write_text(_release(repo, packages))
    signing.sign(repo / "Release")


def _release(repo: Path, packages: str) -> str:
    """The Release file of a flat repository: no Suite, Codename or Components."""
    architectures = sorted({line.split(": ", 1)[1] for line in packages.splitlines()
                            if line.startswith("Architecture: ")})
    indexes = [(name, (repo / name).read_bytes()) for name in ("Packages", "Packages.gz")]
    lines = ["Origin: kubestrata", "Label: kubestrata",
             f"Architectures: {' '.join(architectures)}",
             f"Date: {formatdate(usegmt=True)}",
             "Description: Kubernetes built from source by kubestrata"]
    for title, algorithm in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{title}:")
        lines += [f" {algorithm(data).hexdigest()} {len(data):>10} {name}"
                  for name, data in indexes]
    return "\n".join(lines) + "\n"
