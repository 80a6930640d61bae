"""Run on a node: GET /version from an etcd port over TLS, verifying the server's certificate
against the CA and the name given; a client certificate only if one is given (- for none).

    python3 tls_probe.py ADDRESS PORT CA CERT|- KEY|- SERVER_NAME   -> the body
Exit 1 when the TLS exchange fails (the reason, e.g. the server's alert, follows "refused:"),
exit 2 when no TCP connection is made ("unreachable:").
"""
import socket
import ssl
import sys

address, port, ca, cert, key, name = sys.argv[1:7]
context = ssl.create_default_context(cafile=ca)
if cert != "-":
    context.load_cert_chain(cert, key)
try:
    with socket.create_connection((address, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"GET /version HTTP/1.0\r\nHost: etcd\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
except ssl.SSLError as exc:
    print(f"refused: {exc.reason or exc}")
    sys.exit(1)
except OSError as exc:
    print(f"unreachable: {exc}")
    sys.exit(2)
head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
status = (head.splitlines() or ["no answer"])[0]
if " 200 " not in status:
    print(f"refused: {status}")
    sys.exit(1)
print(body)
