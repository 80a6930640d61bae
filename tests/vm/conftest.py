"""Fixtures for the VM tests: cloud-init's own schema validator and a bootable Debian image.

Both are built on first use and cached under the kubestrata cache, keyed by their inputs:
- trixie's cloud-init (bookworm's 22.4 cannot check network-config), fetched with a private
  apt configuration that leaves the host's apt setup alone, plus a venv for its Python deps;
- a Debian disk image (the lab's suite, trixie) with a kernel and cloud-init, made offline by
  debootstrap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubestrata.lab import debian
from kubestrata.lab.debian import SUITE, archive_url
from kubestrata.paths import CACHE_DIR
from kubestrata.shell import CommandError, run

SCHEMA_SUITE = "trixie"
# cloud-init's imports when it validates a schema (cloud-init is not on PyPI).
SCHEMA_PYTHON_DEPS = ("PyYAML==6.0.4", "jsonschema==4.26.0", "Jinja2==3.1.6", "configobj==5.0.9",
                      "requests==2.34.2", "jsonpatch==1.48", "oauthlib==4.0.1")

IMAGE_PACKAGES = (
    "systemd-sysv", "udev", "linux-image-cloud-amd64", "initramfs-tools", "cloud-init",
    "python3-cffi-backend",     # python3-cryptography's dependency that debootstrap misses
    "locales", "openssh-server", "sudo", "iproute2", "netbase", "python3",
    "e2fsprogs", "ca-certificates",
    # Debian 13's cloud images: netplan rendering for systemd-networkd, and the D-Bus system
    # bus (without it `cloud-init status --wait` as a user never ends: systemctl cannot ask).
    "netplan.io", "dbus",
)
# What the image holds besides the packages; change it and the cache key changes.
IMAGE_FILES = {
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/locale.gen": "en_US.UTF-8 UTF-8\n",
    "etc/machine-id": "",
    # Look for the NoCloud seed only: no probing of cloud metadata addresses.
    "etc/cloud/cloud.cfg.d/90_kubestrata_test.cfg": "datasource_list: [NoCloud, None]\n",
}
IMAGE_SIZE = "2G"


def _missing(*commands: str) -> list[str]:
    return [command for command in commands if shutil.which(command) is None]


def _publish(building: Path, target: Path) -> None:
    """Move a finished build into place (another run may have finished first)."""
    try:
        building.rename(target)
    except OSError:
        shutil.rmtree(building)


@pytest.fixture(scope="session")
def cloud_init_schema():
    """validate(kind, path) -> CompletedProcess, kind being "cloud-config" or "network-config"."""
    missing = _missing("apt-get", "dpkg-deb")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to fetch Debian's cloud-init")
    base = CACHE_DIR / "cloud-init-schema" / SCHEMA_SUITE
    package = base / "package"
    venv = base / ("venv-" + hashlib.sha256(" ".join(SCHEMA_PYTHON_DEPS).encode()).hexdigest()[:12])
    if not (package / "usr" / "lib" / "python3" / "dist-packages" / "cloudinit").is_dir():
        _fetch_cloud_init(base, package)
    if not (venv / "bin" / "python").exists():
        building = venv.with_name(venv.name + f".building-{os.getpid()}")
        run([sys.executable, "-m", "venv", str(building)], timeout=120)
        run([str(building / "bin" / "pip"), "install", "-q", *SCHEMA_PYTHON_DEPS], timeout=600)
        # Renaming breaks the venv's scripts (their #! names the old path), not bin/python.
        _publish(building, venv)
    env = {**os.environ, "PYTHONPATH": str(package / "usr" / "lib" / "python3" / "dist-packages")}

    def validate(kind: str, path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "python"), "-m", "cloudinit.cmd.main",
                               "schema", "-t", kind, "-c", str(path)],
                              capture_output=True, text=True, env=env, timeout=120)
    return validate


def _fetch_cloud_init(base: Path, package: Path) -> None:
    """Download and unpack the suite's cloud-init .deb without changing the host's apt setup."""
    downloads = base / "download"
    shutil.rmtree(downloads, ignore_errors=True)
    deb = debian.fetch("cloud-init", downloads, suite=SCHEMA_SUITE)
    building = package.with_name(package.name + f".building-{os.getpid()}")
    run(["dpkg-deb", "-x", str(deb), str(building)], timeout=120)
    _publish(building, package)
    shutil.rmtree(downloads)


@dataclass(frozen=True)
class DiskImage:
    kernel: Path
    initrd: Path
    disk: Path          # qcow2, to be used as the backing file of a throwaway overlay


def _image_key() -> str:
    text = "|".join([SUITE, archive_url(), IMAGE_SIZE, *IMAGE_PACKAGES,
                     *(f"{path}={content}" for path, content in sorted(IMAGE_FILES.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def debian_image() -> DiskImage:
    """A Debian image with a kernel, cloud-init and sshd, built once (~70 s) and cached."""
    if os.geteuid() != 0:
        pytest.skip("building the VM image needs root (debootstrap, chroot)")
    missing = _missing("debootstrap", "chroot", "mkfs.ext4", "qemu-img")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install debootstrap e2fsprogs qemu-utils")
    target = CACHE_DIR / "vm-image" / f"{SUITE}-{_image_key()}"
    image = DiskImage(target / "vmlinuz", target / "initrd.img", target / "disk.qcow2")
    if not image.disk.exists():
        building = target.with_name(target.name + f".building-{os.getpid()}")
        try:
            _build_image(building)
        except (CommandError, subprocess.SubprocessError):
            shutil.rmtree(building, ignore_errors=True)
            raise
        _publish(building, target)
    return image


def _build_image(directory: Path) -> None:
    root = directory / "root"
    root.mkdir(parents=True)
    run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}", SUITE,
         str(root), archive_url()], timeout=900)
    for relative, content in IMAGE_FILES.items():
        (root / relative).write_text(content)
    run(["chroot", str(root), "locale-gen"], timeout=300)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    [kernel] = (root / "boot").glob("vmlinuz-*")
    [initrd] = (root / "boot").glob("initrd.img-*")
    shutil.copyfile(kernel, directory / "vmlinuz")
    shutil.copyfile(initrd, directory / "initrd.img")
    raw = directory / "disk.raw"
    run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(raw), IMAGE_SIZE], timeout=600)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(directory / "disk.qcow2")],
        timeout=600)
    raw.unlink()
    shutil.rmtree(root)
