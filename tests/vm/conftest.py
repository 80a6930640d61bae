"""Fixtures for the VM tests: cloud-init's own schema validator, a bootable Debian image and a
private libvirt host.

The first two are built on first use and cached under the kubestrata cache, keyed by inputs:
- trixie's cloud-init (bookworm's 22.4 cannot check network-config), fetched with a private
  apt configuration that leaves the host's apt setup alone, plus a venv for its Python deps;
- a bootable Debian cloud-style disk image (the lab's suite, trixie; tests/vm/image.py).
The libvirt host (tests/vm/libvirt_host.py) lives for the session, in namespaces of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubestrata import vms
from kubestrata.lab import debian
from kubestrata.lab.debian import SUITE
from kubestrata.paths import CACHE_DIR
from kubestrata.shell import CommandError, run
from tests.vm import image
from tests.vm import libvirt_host as host_module

SCHEMA_SUITE = "trixie"
# cloud-init's imports when it validates a schema (cloud-init is not on PyPI).
SCHEMA_PYTHON_DEPS = ("PyYAML==6.0.4", "jsonschema==4.26.0", "Jinja2==3.1.6", "configobj==5.0.9",
                      "requests==2.34.2", "jsonpatch==1.48", "oauthlib==4.0.1")

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
    disk: Path          # a bootable disk (MBR, GRUB for BIOS): the base of copy-on-write disks
    format: str         # as qemu-img reads it


@pytest.fixture(scope="session")
def debian_image() -> DiskImage:
    """A bootable Debian cloud-style image (tests/vm/image.py), built once and cached."""
    if os.geteuid() != 0:
        pytest.skip("building the VM image needs root (debootstrap, chroot, a loop device)")
    missing = _missing("debootstrap", "chroot", "mkfs.ext4", "qemu-img", "losetup", "partx",
                       "unshare")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install debootstrap e2fsprogs "
                    "qemu-utils util-linux")
    target = CACHE_DIR / "vm-image" / f"{SUITE}-{image.image_key()}"
    disk = target / "disk.qcow2"
    if not disk.exists():
        building = target.with_name(target.name + f".building-{os.getpid()}")
        started = time.monotonic()
        try:
            image.build(building, disk.name)
        except (CommandError, subprocess.SubprocessError):
            shutil.rmtree(building, ignore_errors=True)
            raise
        _publish(building, target)
        print(f"\nVM image built in {time.monotonic() - started:.0f} s: {disk}")
    return DiskImage(disk, vms.image_format(str(disk)))


@pytest.fixture(scope="session")
def libvirt_host():
    """A private libvirtd in a network namespace of its own (tests/vm/libvirt_host.py); after
    the session, nothing of it may be left: no process, namespace, mount, bridge or file."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (network and mount namespaces)")
    missing = host_module.missing_commands()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install libvirt-daemon-system "
                    "dnsmasq-base iptables")
    host = host_module.LibvirtHost(Path(tempfile.mkdtemp(prefix="kubestrata-libvirt-")))
    try:
        host.start()
    except host_module.LibvirtHostError as error:
        host.stop()
        pytest.fail(f"the private libvirtd did not start: {error}")
    print(f"\nprivate libvirtd answering in {host.timings['daemon start']:.1f} s: {host.uri}")
    yield host
    leftovers = host.stop()
    print(f"\nprivate libvirtd torn down in {host.timings['teardown']:.1f} s")
    assert leftovers == [], f"the private libvirt host left: {leftovers}"
