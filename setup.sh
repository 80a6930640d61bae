#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine: installs what kubestrata needs
# (apt packages, through sudo when run as a user; the .venv), then runs the command asked for.
#   sudo ./setup.sh up all-in-one     kubestrata up: machines (lab nodes unless --provider libvirt),
#                                     every layer, verification, how to reach it
#   ./setup.sh up all-in-one --provider libvirt
#                                     the same on VMs, as you (a member of the libvirt group)
#   sudo ./setup.sh test              run the whole test suite
#   ./setup.sh kubestrata ARGS        any kubestrata command (lab nodes need sudo)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  python3-venv python3-dev gcc          # the venv and packages that compile
  iproute2 openssh-client               # lab networking, SSH to nodes
  systemd-container debootstrap         # lab nodes (systemd-nspawn) and their root filesystem
  dpkg-dev                              # dpkg-scanpackages, dpkg-deb: the lab's mirror, the bundle's packages
  gnupg                                 # signs the bundle's apt repository (a key per cache)
  libc6-dev                             # the pause image is C, linked static
  qemu-system-x86 qemu-utils            # the VM boot test: qemu (TCG) and qemu-img
  cloud-image-utils                     # cloud-localds: the NoCloud seed of the VM boot test
  libvirt-daemon-system dnsmasq-base    # the libvirt boot test's private libvirtd (in a network namespace of
  iptables                              #   its own) and its NAT network's DNS and rules
  genisoimage xsltproc                  # kubestrata runs mkisofs (cloud-init seeds), the libvirt provider xsltproc
                                        #   (the domain's console-log transform) where Pulumi runs
)

# The Kubernetes bundle is built from Go modules (gobuild/): Go 1.26 or newer on PATH.
check_go() {
  if ! command -v go >/dev/null; then
    echo "setup.sh: no Go toolchain: kubestrata builds Kubernetes from its Go modules and needs" >&2
    echo "  Go 1.26 or newer on PATH (https://go.dev/dl/, or Debian's golang-go from trixie-backports)" >&2
    exit 1
  fi
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run the tests as root (sudo $0 test): lab nodes need network namespaces and mounts" >&2
    exit 1
  fi
}

# apt needs root: as a user, through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "setup.sh: installing packages needs root: run as root, or install sudo" >&2
    exit 1
  fi
}

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_venv() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "setup.sh: installing Python packages into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -c constraints.txt -e '.[test]'
    touch "$stamp"
  fi
}

command=${1:-}
[ -n "$command" ] || { sed -n '2,8p' "$0"; exit 2; }
shift
[ "$command" != test ] || need_root
install_apt
install_venv
check_go
export PATH="$PWD/.venv/bin:$PATH"
case "$command" in
  up)         exec kubestrata up "$@" ;;
  # Two workers by default (tests/scheduling.py keeps each lab's tests in one); -n 0 for one.
  test)       exec python -m pytest -n "${KUBESTRATA_TEST_WORKERS:-2}" "$@" ;;
  kubestrata) exec kubestrata "$@" ;;
  *)          echo "setup.sh: unknown command $command; use up, test or kubestrata" >&2; exit 2 ;;
esac
