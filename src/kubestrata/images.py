"""Container images made here, with no registry: a root filesystem per layer, written as an OCI
archive by kubestrata's image tool (gobuild/imagetool, go-containerregistry), named as the
runtime will ask for it.

The layers are tars of directories made here: a small base (passwd, group, nsswitch, /tmp, the
CA bundle) like the distroless images upstream builds on, and the program. Programs that need a
userland (kube-proxy needs iptables and conntrack) get it from Debian's packages, unpacked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from kubestrata.lab import debian

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# kube-proxy runs iptables-restore and conntrack; Debian's iptables uses the nft backend by
# default, as the nodes do (update-alternatives does not run when packages are only unpacked).
# Debian 13 is merged-/usr: base-files links these, and the loader is found at /lib64.
MERGED_USR = ("bin", "sbin", "lib", "lib64")
IPTABLES_LINKS = ("iptables", "iptables-save", "iptables-restore",
                  "ip6tables", "ip6tables-save", "ip6tables-restore")


@dataclass(frozen=True)
class Image:
    name: str                                     # registry.k8s.io/kube-proxy:v1.36.3
    files: dict[str, Path]                        # path in the image -> file here
    entrypoint: tuple[str, ...] = ()
    user: str = ""
    debian_packages: tuple[str, ...] = ()         # unpacked into a layer of their own
    env: tuple[str, ...] = field(default=(f"PATH={PATH}",))

    @property
    def archive_name(self) -> str:
        return self.name.replace("/", "_").replace(":", "_") + ".tar"


def build(image: Image, imagetool: Path, into: Path, scratch: Path, debs: Path) -> Path:
    """Write image as into/<archive_name>; debs caches the Debian packages it unpacks."""
    work = scratch / image.archive_name
    shutil.rmtree(work, ignore_errors=True)
    layers = [_tar(_base(work / "base"), work / "base.tar")]
    if image.debian_packages:
        layers.append(_tar(_userland(image.debian_packages, work / "userland", debs),
                           work / "userland.tar"))
    program = work / "program"
    for inside, source in image.files.items():
        target = program / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    layers.append(_tar(program, work / "program.tar"))
    target = into / image.archive_name
    argv = [str(imagetool), "-name", image.name, "-out", str(target),
            "-entrypoint", json.dumps(list(image.entrypoint)), "-user", image.user]
    for layer in layers:
        argv += ["-layer", str(layer)]
    for variable in image.env:
        argv += ["-env", variable]
    subprocess.run(argv, check=True, capture_output=True, text=True)
    shutil.rmtree(work)
    return target


def manifest_digest(archive: Path) -> str:
    """The digest of the image manifest an OCI archive's index names (what runtimes list)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return index["manifests"][0]["digest"]


def _base(root: Path) -> Path:
    for name, text in BASE_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    if CA_BUNDLE.exists():
        (root / "etc/ssl/certs").mkdir(parents=True)
        shutil.copy(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    return root


def _userland(packages: tuple[str, ...], root: Path, debs: Path) -> Path:
    """Debian packages and everything they depend on, unpacked (no maintainer scripts)."""
    wanted = debs / "-".join(packages)
    if not (wanted / ".complete").exists():
        shutil.rmtree(wanted, ignore_errors=True)
        debian.download(list(packages), wanted)
        (wanted / ".complete").touch()
    root.mkdir(parents=True)
    for deb in sorted(wanted.glob("*.deb")):
        subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True)
    for name in MERGED_USR:
        if not (root / name).exists():
            (root / name).symlink_to(f"usr/{name}")
    for name in IPTABLES_LINKS:
        link = root / "usr/sbin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("xtables-nft-multi")
    for docs in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
        shutil.rmtree(root / docs, ignore_errors=True)
    return root


def _tar(root: Path, target: Path) -> Path:
    """root as a layer: sorted entries, owned by root, no times, so the bytes repeat."""
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=normalise)
    return target
