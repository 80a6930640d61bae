"""kubestrata certs: the output read on a node parsed into certificates (a PEM file and a
kubeconfig's base64 client certificate), and the table with what expires soon."""

import base64
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubestrata import certs

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


def pem(common_name: str, days: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(NOW - timedelta(days=1))
                   .not_valid_after(NOW + timedelta(days=days))
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_certificate_files_and_kubeconfig_client_certificates_are_parsed():
    client = base64.b64encode(pem("kubernetes-admin", 2).encode()).decode()
    output = (f"== /etc/kubernetes/pki/apiserver.crt\n{pem('kube-apiserver', 365)}"
              f"== /etc/kubernetes/admin.conf\n{client}\n"
              "== /etc/kubernetes/kubelet.conf\n\n")        # a kubeconfig naming a file instead
    found = certs.parse("cp-1", output)
    assert [(c.node, c.path, c.subject) for c in found] == [
        ("cp-1", "/etc/kubernetes/pki/apiserver.crt", "kube-apiserver"),
        ("cp-1", "/etc/kubernetes/admin.conf", "kubernetes-admin")]
    assert round(found[0].days_left(NOW)) == 365


def test_the_table_lists_soonest_first_and_names_what_expires_within_the_days():
    found = certs.parse("cp-1", f"== /a.crt\n{pem('a', 365)}== /b.crt\n{pem('b', 2)}")
    lines, expiring = certs.report(found, within_days=30, now=NOW)
    assert lines[0].split() == ["node", "certificate", "subject", "expires", "(UTC)", "days"]
    assert [line.split()[1] for line in lines[1:]] == ["/b.crt", "/a.crt"]
    assert lines[1].split()[-1] == "2"
    assert [c.path for c in expiring] == ["/b.crt"]
    assert certs.report(found, within_days=1, now=NOW)[1] == []
