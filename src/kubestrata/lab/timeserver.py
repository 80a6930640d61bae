"""The lab's time source: an NTP server (RFC 5905, server mode) on the lab gateway that answers
with this machine's clock, as an air-gapped site's own time server does. The nodes' chrony
selects it as their source; the prepare checks require that.

    ip netns exec NETNS python -m kubestrata.lab.timeserver ADDRESS
"""

from __future__ import annotations

import socket
import struct
import sys
import time

PORT = 123
NTP_EPOCH = 2208988800          # seconds from 1900, NTP's epoch, to 1970
PACKET = struct.Struct("!BBbbII4sQ8sQQ")
CLIENT, SERVER = 3, 4
STRATUM = 1                      # a reference clock of its own: this machine's
PRECISION = -20                  # about a microsecond, as log2 seconds


def ntp_time(seconds: float) -> int:
    """A Unix time as a 64-bit NTP timestamp (32 bits of seconds, 32 of fraction)."""
    whole = int(seconds)
    return ((whole + NTP_EPOCH) << 32) | int((seconds - whole) * 2 ** 32)


def answer(request: bytes, received: float, now: float) -> bytes | None:
    """The server's reply to a client's request, or None for anything else."""
    if len(request) < PACKET.size or request[0] & 0b111 != CLIENT:
        return None
    version = request[0] >> 3 & 0b111
    poll = request[2]
    client_transmit = request[40:48]
    return PACKET.pack(version << 3 | SERVER, STRATUM, poll if poll < 128 else 0, PRECISION,
                       0, 0, b"LOCL", ntp_time(now), client_transmit, ntp_time(received),
                       ntp_time(time.time()))


def serve(address: str, port: int = PORT) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind((address, port))
        while True:
            request, client = server.recvfrom(512)
            received = time.time()
            reply = answer(request, received, received)
            if reply:
                server.sendto(reply, client)


if __name__ == "__main__":
    serve(sys.argv[1])
