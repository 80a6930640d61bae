"""SSH ProxyCommand for lab nodes: relays stdin/stdout to HOST:PORT from inside the lab namespace.

The lab inventory runs it as `ip netns exec LAB-NAMESPACE python -m kubestrata.lab.proxy %h %p`, so
Ansible, SSH and molecule reach the nodes from the host's own namespace too.
"""

import os
import selectors
import socket
import sys


def relay(host: str, port: int) -> None:
    conn = socket.create_connection((host, port), timeout=10)
    conn.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(conn, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is conn:
                data = conn.recv(65536)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            else:
                data = os.read(sys.stdin.fileno(), 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    selector.unregister(sys.stdin.fileno())
                    continue
                conn.sendall(data)


def detach() -> None:
    """A session of its own. ssh starts the proxy in its caller's process group, and an Ansible
    worker that is still alive when the run ends is stopped with a signal to its whole group:
    the proxy went with it, and the ControlPersist master that outlives the run lost its
    connection (so the next run had no shared connection). ssh still ends the proxy itself (it
    signals its pid), and the proxy ends when ssh closes its stdin and the node its side."""
    try:
        os.setsid()
    except PermissionError:        # already a process group leader
        pass


if __name__ == "__main__":
    detach()
    relay(sys.argv[1], int(sys.argv[2]))
