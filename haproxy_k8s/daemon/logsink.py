"""Receive HAProxy's log messages on a unix datagram socket the daemon owns.

A server's state change arrives the moment it happens, so the health view
re-reads only that backend instead of every server every second (issue 14:
9 % of a core at 1,000 clusters). The socket has a fixed abstract address
named after the state dir (paths.log_socket) and is bound before HAProxy
starts: it survives reloads, and a restarted daemon binds it again, so an
adopted HAProxy's messages still arrive (its stderr went to a pipe that died
with the old daemon). Anyone on the host can send to an abstract socket: a
message only makes the daemon re-read a backend from the admin socket, so a
forged one costs a read, never a wrong state.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from ..haproxy.logs import parse_log

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-logs"
# A mass failure (thousands of servers DOWN at once) arrives as one burst;
# what the buffer cannot hold is dropped by HAProxy and found by the next
# full poll. The kernel caps this at net.core.rmem_max unless we are root.
RCVBUF = 4 << 20
_WAKE = b"\0wake"  # what stop() sends itself: no HAProxy message starts with NUL
SUN_PATH = 108  # HAProxy's abns@ address is the whole sun_path, NUL-padded


def abstract_address(name: str) -> bytes:
    """The address HAProxy's `abns@name` sends to (the padding is part of the name)."""
    raw = b"\0" + name.encode()
    if len(raw) > SUN_PATH:
        raise ValueError(f"abstract socket name too long: {name!r}")
    return raw.ljust(SUN_PATH, b"\0")


class LogSink:
    """Calls `on_backends(set_of_backends)` on its own thread for each burst of news."""

    def __init__(self, name: str, on_backends: Callable[[set[str]], None]) -> None:
        self.name = name
        self.address = abstract_address(name)
        self.on_backends = on_backends
        self.received = 0  # datagrams, for tests and metrics
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def bind(self) -> bool:
        """Bind the socket (replacing a stale one); False, logged, when it cannot be."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except OSError as e:
            sock.close()
            log.warning("cannot bind the log socket @%s (health falls back to polling): %s",
                        self.name, e)
            return False
        self._sock = sock
        return True

    def start(self) -> None:
        if self._sock is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._sock is not None and self._thread is not None:
            with contextlib.suppress(OSError), \
                    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                waker.sendto(_WAKE, self.address)
            self._thread.join(timeout)
        self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        # Until the next daemon binds the address, HAProxy's sends fail quietly.

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                first = self._sock.recv(65536)
            except OSError as e:
                if not self._stop.is_set():
                    log.error("log socket @%s failed: %s", self.name, e)
                return
            backends = self._backends([first, *self._drain()])
            if backends and not self._stop.is_set():
                try:
                    self.on_backends(backends)
                except Exception:  # a bug must not end the news feed for good
                    log.exception("handling HAProxy's log messages failed")

    def _drain(self) -> list[bytes]:
        """Whatever else already arrived: one refresh for a burst, not one per message."""
        assert self._sock is not None
        more: list[bytes] = []
        while len(more) < 10000:
            try:
                more.append(self._sock.recv(65536, socket.MSG_DONTWAIT))
            except (BlockingIOError, InterruptedError):
                break
        return more

    def _backends(self, datagrams: list[bytes]) -> set[str]:
        backends: set[str] = set()
        for datagram in datagrams:
            if datagram == _WAKE:
                continue
            self.received += 1
            message = parse_log(datagram)
            if message is None:
                continue
            log.debug("haproxy: %s", message.text)
            if message.backend is not None:
                backends.add(message.backend)
        return backends
