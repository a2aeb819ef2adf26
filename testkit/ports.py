"""Loopback ports for the balancer, stats and metrics under test."""

from __future__ import annotations

import collections
import socket
import threading

BALANCER = "127.0.8.1"

# Ports handed out lately. The kernel may pick the port it just gave for the
# next port-0 bind too, once the first socket is closed: a test asking for a
# cluster port and then a stats port got one port for both, and the daemon
# rightly refused the config (a CI run on 2026-11-28).
_RECENT: collections.deque[int] = collections.deque(maxlen=512)
_LOCK = threading.Lock()


def free_port(host: str = BALANCER) -> int:
    """A port nobody listens on at `host` right now (the kernel's pick for port 0),
    and not one this process was given lately."""
    with _LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _RECENT:
                _RECENT.append(port)
                return port
    raise RuntimeError(f"no fresh port on {host} after 100 tries")
