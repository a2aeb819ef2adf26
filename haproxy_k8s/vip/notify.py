"""keepalived's state changes, read from its notify FIFO (no script forked per event).

keepalived writes lines such as `INSTANCE "haproxy_k8s" MASTER 150`. The FIFO
is opened read-write, so it never reports end-of-file while keepalived
restarts, and events written while the daemon itself is down wait in the pipe
for the restarted daemon. The last role is also kept in a small file, so a
restarted daemon knows the role before the next event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from ..fileio import write_atomic

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-vrrp-events"
ROLES = ("MASTER", "BACKUP", "FAULT", "STOP")
_EVENT = re.compile(r'^INSTANCE\s+"?([^"\s]+)"?\s+(\w+)\s+(\d+)')


def parse_event(line: str) -> tuple[str, str, int] | None:
    """(instance, state, priority) of a notify line, None for other lines."""
    match = _EVENT.match(line.strip())
    if match is None:
        return None
    return match.group(1), match.group(2).upper(), int(match.group(3))


def ensure_fifo(path: Path) -> None:
    """Create the FIFO (replacing anything else at that path)."""
    try:
        if not stat.S_ISFIFO(path.stat().st_mode):
            path.unlink()
            os.mkfifo(path)
    except FileNotFoundError:
        os.mkfifo(path)
    # Group-writable whatever the umask: under systemd keepalived writes it as root
    # without CAP_DAC_OVERRIDE, through the group haproxy (haproxy-k8s-keepalived.service).
    os.chmod(path, 0o660)


class RoleWatcher:
    """Reads the FIFO on a thread; `on_change(role)` is called for every transition."""

    def __init__(self, fifo: Path, saved: Path, on_change: Callable[[str], None]) -> None:
        self.fifo, self.saved = fifo, saved
        self.on_change = on_change
        self.role = self._load()
        self.transitions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _load(self) -> str:
        with contextlib.suppress(OSError):
            text = self.saved.read_text().strip()
            if text in ROLES:
                return text
        return "UNKNOWN"

    def start(self) -> None:
        ensure_fifo(self.fifo)
        fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(fd,), name=THREAD_NAME,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, fd: int) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                with contextlib.suppress(BlockingIOError):
                    buffer += os.read(fd, 4096)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._event(line.decode(errors="replace"))
        finally:
            os.close(fd)

    def _event(self, line: str) -> None:
        parsed = parse_event(line)
        if parsed is None:
            return
        _instance, role, _prio = parsed
        if role == self.role:
            return
        log.warning("VRRP role %s -> %s", self.role, role)
        self.role = role
        self.transitions += 1
        with contextlib.suppress(OSError):
            write_atomic(self.saved, role + "\n", durable=False)
        self.on_change(role)
