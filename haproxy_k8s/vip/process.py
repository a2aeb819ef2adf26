"""Start, adopt, reload and stop keepalived as the daemon's second child.

Like the HAProxy master (haproxy/master.py): its own session, so it outlives
a daemon crash; a pid file in the state dir, so a restarted daemon adopts it;
restarts with backoff are the caller's; never waitpid(-1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time

from .. import proc
from ..errors import ProcessError
from ..haproxy.paths import read_pid
from .render import VipPaths

log = logging.getLogger(__name__)


class KeepalivedProcess:
    def __init__(self, binary: str, paths: VipPaths) -> None:
        self.binary = binary
        self.paths = paths
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    def command_line(self) -> list[str]:
        # -n: stay in the foreground; -P: VRRP only; -l -D: detailed log to our pipe;
        # pid files in our state dir (never /run/keepalived*).
        return [self.binary, "-n", "-P", "-l", "-D", "-G", "-f", str(self.paths.config),
                "-p", str(self.paths.pid), "-r", str(self.paths.vrrp_pid)]

    def start(self) -> None:
        # Its log goes to a file, not a pipe to us: keepalived outlives the daemon
        # (adoption), and a pipe whose reader died would break its next write.
        # Truncated at each start; keepalived logs little (transitions), and the
        # daemon logs every role change itself.
        try:
            with self.paths.log.open("wb") as out:
                self._popen = subprocess.Popen(
                    self.command_line(), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise ProcessError(f"cannot start {self.binary}: {e}") from e
        self.pid = self._popen.pid
        log.info("keepalived %d started (log: %s)", self.pid, self.paths.log)

    def adopt(self) -> bool:
        pid = read_pid(self.paths.pid)
        if pid is None or not self._ours(pid):
            return False
        self.pid, self._popen = pid, None
        log.info("adopted running keepalived %d", pid)
        return True

    def _ours(self, pid: int) -> bool:
        import psutil  # here: only an adoption asks, and every start imports this module

        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.Error:
            return False
        return bool(cmdline) and "keepalived" in cmdline[0] and str(self.paths.config) in cmdline

    def alive(self) -> bool:
        return proc.alive(self.pid, self._popen)

    def reload(self) -> None:
        """SIGHUP: keepalived re-reads its config, keeping its VRRP state."""
        if self.alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: keepalived sends priority 0 (the peer takes over at once) and
        removes the VIPs; SIGKILL only when it does not exit in time."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 3.0)):
            if not self.alive() or self.pid is None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1.0)
        self.pid = None
