"""What systemd listens on for sd_notify: a datagram socket that keeps every message.

A reader thread takes each datagram as it arrives and stamps it with the time it came,
so gaps between watchdog pings are measured as systemd would see them.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from pathlib import Path

from helpers import wait_until


class NotifySocket:
    """Collects every datagram the daemon sends, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self.stamps: list[float] = []  # time.monotonic() of each message, same index
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            message = dict(line.split("=", 1) for line in data.splitlines())
            with self._lock:
                self.messages.append(message)
                self.stamps.append(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.sock.close()

    def drain(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.messages)

    def seen(self, key: str, value: str | None = None) -> list[dict[str, str]]:
        return [m for m in self.drain() if key in m and (value is None or m[key] == value)]

    def wait_ready(self, timeout: float, after: int = 0) -> dict[str, str]:
        """The first READY=1 beyond the first `after` ones, as soon as it arrives."""
        found = wait_until(lambda: self.seen("READY", "1")[after:], timeout, interval=0.001,
                           message="READY=1")
        return found[0]

    def watchdog_gaps(self, since: float) -> list[float]:
        """Seconds between consecutive WATCHDOG=1 pings that arrived after `since`."""
        with self._lock:
            stamps = [at for m, at in zip(self.messages, self.stamps, strict=True)
                      if m.get("WATCHDOG") == "1" and at >= since]
        return [b - a for a, b in itertools.pairwise(stamps)]
