"""Run in the lab's network namespace: open a new TCP connection to HOST:PORT every 50 ms for
SECONDS, read the first line (a test double answers with its node's name), and print a JSON list
of [unix time, answer or null]. Only the lab's own addresses are ever contacted.

    ip netns exec LAB python3 vip_probe.py HOST PORT SECONDS
"""
import json
import socket
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
samples = []
end = time.time() + seconds
while time.time() < end:
    started = time.time()
    try:
        with socket.create_connection((host, port), timeout=0.3) as conn:
            conn.settimeout(0.5)
            answer = conn.recv(64).decode().strip() or None
    except OSError:
        answer = None
    samples.append([started, answer])
    time.sleep(0.05)
print(json.dumps(samples))
