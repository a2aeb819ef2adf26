"""One daemon per state dir: an exclusive lock held for the daemon's lifetime.

Two daemons on one state dir would both adopt the same HAProxy, and the one
stopped second would stop it and delete the other's pid file. The lock is an
flock on `daemon.lock` (released by the kernel however the holder dies), and
the file names the holder's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import HaproxyK8sError
from ..haproxy.paths import StatePaths


class StateDirLocked(HaproxyK8sError):
    """Another daemon holds the state dir."""


class StateDirLock:
    def __init__(self, root: Path) -> None:
        self.path = root / "daemon.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateDirLocked naming the holder; creates the dir."""
        StatePaths(self.path.parent).ensure_root()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"another haproxy-k8s daemon (pid {holder}) already runs on "
                f"{self.path.parent}; stop it first (or give this one its own "
                "haproxy.state_dir)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        # The file stays: unlinking a lock file races with the next daemon's open.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
