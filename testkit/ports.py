"""Loopback ports for the balancer, stats and metrics under test."""

from __future__ import annotations

import socket

BALANCER = "127.0.8.1"


def free_port(host: str = BALANCER) -> int:
    """A port nobody listens on at `host` right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
