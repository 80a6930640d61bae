"""A small OCI image for the layer checks, built offline: busybox-static from Debian as its
whole root filesystem. It is a test image, named as one (TEST_IMAGE); scenarios without the
Kubernetes layer use it as the pod sandbox image too (no-kubernetes-vars.yml).

The tarball is deterministic (fixed mtimes, sorted entries), so its digests are stable, and is
cached under the kubestrata cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import yaml

from kubestrata.cachedir import locked
from kubestrata.lab import debian
from kubestrata.paths import CACHE_DIR

NO_KUBERNETES_VARS = yaml.safe_load((Path(__file__).parent / "no-kubernetes-vars.yml").read_text())
TEST_IMAGE = NO_KUBERNETES_VARS["containerd_sandbox_image"]
LAYOUT = "1"      # bump when the image's make-up changes


def tarball() -> Path:
    """The image as an OCI archive for `ctr images import`, built on first use."""
    target = CACHE_DIR / "test-image" / f"busybox-test-image-{LAYOUT}.tar"
    if target.exists():
        return target
    with locked(target.parent), tempfile.TemporaryDirectory(prefix="kubestrata-image-") as scratch:
        if target.exists():                              # another process built it meanwhile
            return target
        busybox = _busybox(Path(scratch))
        building = target.with_suffix(".building")
        building.write_bytes(_oci_archive(_layer(busybox)))
        building.replace(target)
    return target


def _busybox(scratch: Path) -> Path:
    """busybox from Debian's busybox-static, unpacked into scratch."""
    debs = CACHE_DIR / "test-image" / "debs"
    if not list(debs.glob("busybox-static_*.deb")):
        debian.download(["busybox-static"], debs)
    deb = sorted(debs.glob("busybox-static_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
    # /usr/bin from trixie on (merged /usr), /bin before
    return next(path for path in (scratch / "usr" / "bin" / "busybox", scratch / "bin" / "busybox")
                if path.exists())


def _layer(busybox: Path) -> bytes:
    """An uncompressed layer: /bin/busybox, a link per applet, /tmp and /etc/hosts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind=tarfile.DIRTYPE, data: bytes = b"", mode=0o755, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for directory in ("bin", "etc", "tmp"):
            add(directory, mode=0o1777 if directory == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, busybox.read_bytes())
        for applet in _applets(busybox):
            add(f"bin/{applet}", tarfile.SYMTYPE, link="busybox", mode=0o777)
        add("etc/hosts", tarfile.REGTYPE, b"127.0.0.1 localhost\n", mode=0o644)
    return buffer.getvalue()


def _applets(busybox: Path) -> list[str]:
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted(a for a in listed.stdout.split() if a != "busybox")


def _oci_archive(layer: bytes) -> bytes:
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    compressed = gzip.compress(layer, mtime=0)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep", "infinity"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(_json(config), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(compressed, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    manifest_descriptor = blob(_json(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_descriptor["annotations"] = {"io.containerd.image.name": TEST_IMAGE,
                                          "org.opencontainers.image.ref.name": TEST_IMAGE.rsplit(":", 1)[1]}
    manifest_descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        add("index.json", _json(index))
        for digest, data in sorted(blobs.items()):
            add(f"blobs/sha256/{digest.split(':', 1)[1]}", data)
    return buffer.getvalue()


def _json(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
