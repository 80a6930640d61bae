"""`kubestrata certs NAME`: every certificate on every node and when it expires: kubeadm's PKI,
the client certificates in its kubeconfigs, the kubelet's and etcd's. Only certificates leave
the nodes (never a key: the PEM blocks of certificates are cut out on the node); they are
parsed here."""

from __future__ import annotations

import base64
import binascii
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from kubestrata import remote

CERTIFICATE_FILES = ("/etc/kubernetes/pki/*.crt", "/etc/etcd/pki/*.crt",
                     "/var/lib/kubelet/pki/kubelet-client-current.pem",
                     "/var/lib/kubelet/pki/kubelet.crt")
KUBECONFIGS = "/etc/kubernetes/*.conf"
# What `up` renews: kubeadm_cert_renew_days and etcd_cert_renew_days (the roles' defaults).
RENEW_DAYS = 30
SECTION = "== "

# Prints "== PATH" and then the certificates of each file: the PEM certificate blocks of a
# certificate file (a .pem may hold the key too), the base64 client certificate of a kubeconfig.
READ_SCRIPT = f"""
for f in {' '.join(CERTIFICATE_FILES)}; do
  [ -f "$f" ] || continue
  echo "{SECTION}$f"
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$f"
done
for f in {KUBECONFIGS}; do
  [ -f "$f" ] || continue
  echo "{SECTION}$f"
  sed -n 's/^ *client-certificate-data: *//p' "$f"
done
"""


class CertsError(Exception):
    pass


@dataclass(frozen=True)
class Certificate:
    node: str
    path: str
    subject: str
    not_after: datetime

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


def parse(node: str, output: str) -> list[Certificate]:
    """The first certificate of each section of READ_SCRIPT's output."""
    found = []
    sections = output.split(SECTION)[1:]
    for section in sections:
        path, _, body = section.partition("\n")
        pem = body.encode() if "-----BEGIN" in body else _pem_of_base64(body)
        if not pem:
            continue
        certificate = x509.load_pem_x509_certificates(pem)[0]
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        found.append(Certificate(node, path.strip(), str(names[0].value) if names else "-",
                                 certificate.not_valid_after_utc))
    return found


def _pem_of_base64(body: str) -> bytes:
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return b""


def read(inventory: Path) -> list[Certificate]:
    """Every node's certificates, the nodes read at once (one SSH connection each)."""
    hosts = remote.hostvars(inventory)

    def one(name: str) -> list[Certificate]:
        result = remote.run(hosts[name], READ_SCRIPT, timeout=60)
        if result.returncode != 0:
            problem = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CertsError(f"could not read the certificates of {name}: {problem[0]}")
        return parse(name, result.stdout)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [c for found in pool.map(one, sorted(hosts)) for c in found]


def report(certificates: list[Certificate], within_days: int,
           now: datetime | None = None) -> tuple[list[str], list[Certificate]]:
    """The table (soonest first on each node) and the certificates expiring within_days."""
    now = now or datetime.now(timezone.utc)
    width = max([len(c.path) for c in certificates] + [len("certificate")])
    lines = [f"{'node':<12} {'certificate':<{width}} {'subject':<32} {'expires (UTC)':<16} "
             f"{'days':>6}"]
    for c in sorted(certificates, key=lambda c: (c.node, c.not_after, c.path)):
        lines.append(f"{c.node:<12} {c.path:<{width}} {c.subject[:32]:<32} "
                     f"{c.not_after:%Y-%m-%d %H:%M} {c.days_left(now):>6.0f}")
    return lines, [c for c in certificates if c.days_left(now) < within_days]
