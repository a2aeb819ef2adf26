"""Blocking transport for HAProxy's admin (stats) socket and master CLI socket.

Commands and reply checks live in `runtime`; these send raw lines.

The admin socket answers one command per connection and closes it. The master
socket does not close after a reply (seen on 2.6): a reply ends with a blank
line, so we read until that, with a deadline, instead of waiting for EOF.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ..errors import RuntimeApiError

_END_OF_REPLY = b"\n\n"


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as e:
        sock.close()
        raise RuntimeApiError(f"cannot connect to {path}: {e.strerror or e}") from e
    return sock


def _read(sock: socket.socket, deadline: float, until_blank_line: bool) -> bytes:
    chunks: list[bytes] = []
    tail = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        tail = (tail + data)[-2:]
        if until_blank_line and tail == _END_OF_REPLY:
            return b"".join(chunks)


def send_command(path: Path, command: str, *, timeout: float = 5.0,
                 until_blank_line: bool = False) -> str:
    """Send one command line and return the reply text.

    Raises RuntimeApiError when the socket is unreachable or the reply does
    not arrive before `timeout` seconds.
    """
    if "\n" in command:
        raise RuntimeApiError(f"refusing a command with a newline: {command!r}")
    deadline = time.monotonic() + timeout
    sock = _connect(path, timeout)
    try:
        sock.sendall(command.encode() + b"\n")
        data = _read(sock, deadline, until_blank_line)
    except TimeoutError as e:
        raise RuntimeApiError(f"{path}: no reply to {command!r} within {timeout:g}s") from e
    except OSError as e:
        raise RuntimeApiError(f"{path}: {command!r} failed: {e}") from e
    finally:
        sock.close()
    return data.decode(errors="replace")


class AdminSocket:
    """The worker's runtime API (`stats socket … level admin`)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, command: str) -> str:
        return send_command(self.path, command, timeout=self.timeout)


class MasterSocket:
    """The master CLI (`-S path`): `show proc`, `reload`, `@N` forwarding."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, command: str, timeout: float | None = None) -> str:
        return send_command(self.path, command, timeout=timeout or self.timeout,
                            until_blank_line=True)
