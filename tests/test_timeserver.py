"""The lab's time server answers an NTP client's request as a server, echoing the client's
transmit time as its origin (what the client checks) and reporting a synchronised clock."""

import socket
import struct
import threading
import time

from kubestrata.lab import timeserver

REQUEST = struct.pack("!BBbb9I", 0b00_100_011, 0, 6, -20, *[0] * 9) + b"\x12\x34\x56\x78" * 2


def unpacked(reply: bytes):
    return timeserver.PACKET.unpack(reply)


def test_a_client_request_gets_a_synchronised_server_reply_with_its_time_as_origin():
    now = 1_780_000_000.25
    header, stratum, poll, _, delay, dispersion, refid, reference, origin, received, _ = \
        unpacked(timeserver.answer(REQUEST, now, now))
    assert header >> 6 == 0                                  # leap: no warning (synchronised)
    assert header >> 3 & 0b111 == 4 and header & 0b111 == 4  # version 4, server mode
    assert stratum == 1 and refid == b"LOCL" and poll == 6
    assert (delay, dispersion) == (0, 0)
    assert origin == b"\x12\x34\x56\x78" * 2
    assert received >> 32 == int(now) + 2208988800 and (received & 0xFFFFFFFF) == 2 ** 30
    assert reference == received


def test_anything_but_a_client_request_gets_no_reply():
    server_mode = bytes([0b00_100_100]) + REQUEST[1:]
    assert timeserver.answer(server_mode, 0, 0) is None
    assert timeserver.answer(REQUEST[:47], 0, 0) is None


def test_the_server_answers_over_udp_with_the_current_time():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=timeserver.serve, args=("127.0.0.1", port), daemon=True).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        for _ in range(50):     # until the server's socket is bound
            client.sendto(REQUEST, ("127.0.0.1", port))
            try:
                reply, _ = client.recvfrom(512)
                break
            except TimeoutError:
                continue
    transmit = unpacked(reply)[-1]
    assert abs((transmit >> 32) - 2208988800 - time.time()) < 5
