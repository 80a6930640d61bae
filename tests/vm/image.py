"""A bootable Debian cloud-style disk image, built offline from Debian's archive.

The image is what a cloud image is: an MBR partition table with one ext4 root partition
(last on the disk, so cloud-init's growpart can grow it into a larger copy-on-write volume),
GRUB for BIOS in the MBR gap (so libvirt's default SeaBIOS boots it with no kernel argument),
the kernel and initramfs inside, cloud-init reading a NoCloud seed only, sshd, sudo, netplan
and D-Bus; as qcow2. Built by debootstrap (the lab's suite, trixie), a loop device for GRUB's
installation (this kernel parses no partition table: ``partx -a`` adds the partition), and
``qemu-img convert``.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import uuid
from pathlib import Path

from kubestrata.lab.debian import SUITE, archive_url
from kubestrata.shell import run

IMAGE_PACKAGES = (
    "systemd-sysv", "udev", "linux-image-cloud-amd64", "initramfs-tools", "cloud-init",
    "python3-cffi-backend",     # python3-cryptography's dependency that debootstrap misses
    "locales", "openssh-server", "sudo", "iproute2", "netbase", "python3",
    "e2fsprogs", "ca-certificates",
    # Debian 13's cloud images: netplan rendering for systemd-networkd, and the D-Bus system
    # bus (without it `cloud-init status --wait` as a user never ends: systemctl cannot ask).
    "netplan.io", "dbus",
    # growpart (cloud-init's growpart module grows the root partition into the volume's size).
    "cloud-guest-utils", "fdisk",
    # GRUB for BIOS without grub-pc's debconf questions: grub-install and update-grub.
    "grub-pc-bin", "grub2-common",
)
IMAGE_SIZE_MIB = 2048
PARTITION_START = 2048                   # sectors: 1 MiB, the gap GRUB's core.img lives in
SECTOR = 512
KERNEL_COMMAND_LINE = "console=tty0 console=ttyS0,115200n8"
# What the image holds besides the packages; change it and the cache key changes.
# {uuid} is the root filesystem's UUID (derived from the key, so builds are reproducible).
IMAGE_FILES = {
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/hostname": "localhost\n",            # not the build host's name; cloud-init sets it
    "etc/locale.gen": "en_US.UTF-8 UTF-8\n",
    "etc/machine-id": "",
    "etc/fstab": "UUID={uuid} / ext4 rw,discard,errors=remount-ro 0 1\n",
    "etc/default/grub": (
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\n"
        "GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n"
        f"GRUB_CMDLINE_LINUX=\"{KERNEL_COMMAND_LINE}\"\n"
        "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
        "GRUB_DISABLE_OS_PROBER=true\n"),
    # Look for the NoCloud seed only: no probing of cloud metadata addresses.
    "etc/cloud/cloud.cfg.d/90_kubestrata_test.cfg": "datasource_list: [NoCloud, None]\n",
}

# Runs in a private mount namespace (unshare --mount), so no mount outlives it:
# $1 the loop device of the whole disk, $2 its partition, $3 a mount point, $4 the root
# filesystem's UUID. The chroot gets a /dev of its own holding just those devices and the
# /dev/disk/by-uuid link udev would make (grub-mkconfig writes root=UUID=... only when it
# exists); the host's /dev is not changed.
GRUB_SCRIPT = r"""
set -eu
disk=$1 part=$2 mnt=$3 uuid=$4
mount "$part" "$mnt"
mount -t tmpfs -o mode=0755 kubestrata-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/random /dev/urandom "$disk" "$part" "$mnt/dev/"
mkdir -p "$mnt/dev/disk/by-uuid"
ln -s "../../${part#/dev/}" "$mnt/dev/disk/by-uuid/$uuid"
mount -t proc proc "$mnt/proc"
mount --rbind /sys "$mnt/sys"
chroot "$mnt" grub-install --target=i386-pc --no-floppy --modules="part_msdos ext2" "$disk"
chroot "$mnt" update-grub
grep -q "root=UUID=$uuid" "$mnt/boot/grub/grub.cfg"
"""


def image_key() -> str:
    text = "|".join([SUITE, archive_url(), str(IMAGE_SIZE_MIB), *IMAGE_PACKAGES,
                     KERNEL_COMMAND_LINE, GRUB_SCRIPT,
                     *(f"{path}={content}" for path, content in sorted(IMAGE_FILES.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build(directory: Path, name: str = "disk.qcow2") -> Path:
    """Build the image into directory (made here); returns the qcow2 file."""
    root = directory / "root"
    root.mkdir(parents=True)
    key = image_key()
    fs_uuid = str(uuid.UUID(hashlib.sha256(key.encode()).hexdigest()[:32]))
    run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}", SUITE,
         str(root), archive_url()], timeout=1200)
    for relative, content in IMAGE_FILES.items():
        (root / relative).write_text(content.replace("{uuid}", fs_uuid))
    run(["chroot", str(root), "locale-gen"], timeout=300)
    for host_key in (root / "etc" / "ssh").glob("ssh_host_*"):
        host_key.unlink()
    run(["chroot", str(root), "apt-get", "clean"], timeout=120)

    raw = directory / "disk.raw"
    size = IMAGE_SIZE_MIB * 1024 * 1024
    offset = PARTITION_START * SECTOR
    run(["mkfs.ext4", "-q", "-L", "root", "-U", fs_uuid, "-E", f"offset={offset}",
         "-d", str(root), str(raw), f"{(size - offset) // 1024}k"], timeout=900)
    write_mbr(raw, size, disk_id=int(key[:8], 16))
    _install_grub(raw, directory / "mnt", fs_uuid)
    qcow2 = directory / name
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], timeout=900)
    raw.unlink()
    shutil.rmtree(root)
    return qcow2


def write_mbr(raw: Path, size: int, disk_id: int) -> None:
    """An MS-DOS partition table with one bootable Linux partition from 1 MiB to the end."""
    sectors = size // SECTOR - PARTITION_START
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff",
                        PARTITION_START, sectors)
    with raw.open("r+b") as disk:
        disk.truncate(size)
        disk.seek(440)
        disk.write(struct.pack("<IH", disk_id, 0) + entry + bytes(48) + b"\x55\xaa")


def _install_grub(raw: Path, mountpoint: Path, fs_uuid: str) -> None:
    mountpoint.mkdir()
    loop = run(["losetup", "--find", "--show", str(raw)], timeout=60).stdout.strip()
    try:
        run(["partx", "--add", loop], timeout=60)
        try:
            run(["unshare", "--mount", "--propagation", "private", "sh", "-c", GRUB_SCRIPT,
                 "sh", loop, f"{loop}p1", str(mountpoint), fs_uuid], timeout=600)
        finally:
            run(["partx", "--delete", loop], check=False, timeout=60)
    finally:
        run(["losetup", "--detach", loop], check=False, timeout=60)
    mountpoint.rmdir()

