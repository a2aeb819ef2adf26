"""Start, adopt, reload and stop the HAProxy master (master-worker mode).

The master is started in its own session so that it outlives a crash of the
daemon; a restarted daemon adopts it through the pid file and master socket.
We never call waitpid(-1): only our own Popen (if any) is ever reaped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import proc
from ..errors import ProcessError, RuntimeApiError
from ..fileio import write_atomic
from .paths import StatePaths, read_pid
from .replies import ProcTable, reload_verdict
from .runtime import MasterClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    table: ProcTable | None
    alerts: list[str]
    seconds: float


class _OutputTail(threading.Thread):
    """Follows HAProxy's output file into our log and a short history.

    HAProxy writes its stdout and stderr to `haproxy.out` in the state dir, not
    to a pipe of ours: the file outlives the daemon, so a daemon that adopted
    a running master (after a crash or a re-exec) still reads its alerts, the
    ones that say why a reload failed. The thread ends once the master is gone
    and the file read to its end, or when told to stop.
    """

    # Quiet HAProxy writes nothing for hours: the wait between looks doubles
    # up to POLL_MAX (20 wakeups a second cost more than the rest of an idle
    # daemon), and drops back as soon as a line comes. A failed reload's
    # alerts are fetched at once: catch_up() pokes the thread.
    POLL_MIN, POLL_MAX = 0.05, 1.0

    def __init__(self, path: Path, offset: int, history: collections.deque[tuple[float, str]],
                 running: Callable[[], bool]) -> None:
        super().__init__(name="haproxy-output", daemon=True)
        self._path, self._offset, self._history = path, offset, history
        self._running = running
        self.stop = threading.Event()
        self._poke = threading.Event()  # look now (set by catch_up and by stop)
        self.position = offset  # how far the file has been read

    def run(self) -> None:
        try:
            stream = self._path.open("rb")
        except OSError:
            return
        with stream:
            stream.seek(self._offset)
            wait = self.POLL_MIN
            while True:
                raw = stream.readline()
                if raw.endswith(b"\n"):
                    self._note(raw)
                    self.position = stream.tell()
                    wait = self.POLL_MIN
                elif self.stop.is_set() or not self._running():
                    if raw:
                        self._note(raw)
                    return
                else:
                    stream.seek(-len(raw), 1)  # a line still being written: later
                    self._poke.wait(wait)
                    self._poke.clear()
                    wait = min(wait * 2, self.POLL_MAX)

    def end(self) -> None:
        """Read to the end of the file, then stop."""
        self.stop.set()
        self._poke.set()

    def catch_up(self, timeout: float = 1.0) -> None:
        """Wait until every line written so far has been read (a reload just failed:
        its alerts are in the file, maybe not yet in the history)."""
        try:
            size = self._path.stat().st_size
        except OSError:
            return
        deadline = time.monotonic() + timeout
        while self.position < size and self.is_alive() and time.monotonic() < deadline:
            self._poke.set()
            time.sleep(0.01)

    def _note(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip()
        if not line:
            return
        self._history.append((time.monotonic(), line))
        log.log(journal_level(line), "haproxy: %s", line)


def journal_level(line: str) -> int:
    """The level HAProxy's output line is logged at."""
    if _SERVER_NEWS.search(line):
        # The daemon's own event log says the same, with the node's name: at
        # 1,000 clusters a start printed 3,000 of these twice.
        return logging.DEBUG
    if "[ALERT]" in line:
        return logging.WARNING
    # One line per proxy at every reload (3,000 at 1,000 clusters, logged by a
    # thread of ours while the reload's status is written); the daemon's own
    # apply event says the reload happened.
    return logging.DEBUG if _PROXY_NEWS.search(line) else logging.INFO


# HAProxy's output file is cut back to nothing at a (re)start past this size.
OUTPUT_MAX_BYTES = 4 << 20


_ALERT_PREFIX = re.compile(r"^.*?\[ALERT\]\s*(?:\(\d+\)\s*)?:\s*")
# HAProxy's news of one server's state or check, also told by the daemon's events.
# A reload's new master says `config : Server …` for each server whose state it
# takes from the server-state file.
_SERVER_NEWS = re.compile(
    r"\)\s*:\s*(?:config\s*:\s*)?(?:Server|Health check for (?:backup )?server) \S+/\S+ ")
# A proxy's start and stop, as old and new workers hand over.
_PROXY_NEWS = re.compile(r"\)\s*:\s*(?:Proxy \S+ (?:stopped \(cumulated|started\.)|"
                         r"Stopping (?:frontend|backend|proxy) \S+ in )")
# HAProxy's closing words after the alert that says what is wrong.
_GENERIC = ("Some protocols failed to start their listeners", "Fatal errors found",
            "Error(s) found in configuration file")


def alert_messages(lines: Iterable[str]) -> list[str]:
    """HAProxy's [ALERT] lines as messages: no `[ALERT] (pid) :` prefix, no generic trailer.

    Each alert is logged as HAProxy printed it already; the error recorded
    for `status` and the apply event should say it once, in plain words.
    """
    alerts = [_ALERT_PREFIX.sub("", line) for line in lines if "[ALERT]" in line]
    specific = [a for a in alerts if not any(g in a for g in _GENERIC)]
    return specific or alerts


class HaproxyMaster:
    """One HAProxy master process: ours (a child) or adopted (found running)."""

    def __init__(self, binary: str, paths: StatePaths,
                 env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.paths = paths
        self.env = dict(env) if env is not None else None
        self.master = MasterClient(paths.master_socket)
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._history: collections.deque[tuple[float, str]] = collections.deque(maxlen=200)
        self._pump: _OutputTail | None = None
        self._output_size_before = 0

    # -- lifecycle ---------------------------------------------------------
    def command_line(self) -> list[str]:
        return [self.binary, "-W", "-db", "-S", f"{self.paths.master_socket},mode,600",
                "-f", str(self.paths.config), "-f", str(self.paths.stats_auth),
                "-p", str(self.paths.haproxy_pid)]

    def start(self, timeout: float = 30.0) -> ProcTable:
        """Start a new master on the published config and wait for its worker."""
        self.paths.master_socket.unlink(missing_ok=True)
        if not self.paths.stats_auth.exists():
            # The second -f file (the stats userlist) must exist; empty means "none".
            write_atomic(self.paths.stats_auth, "", mode=0o600)
        started = time.monotonic()
        output = self._open_output()
        try:
            with output:
                self._popen = subprocess.Popen(
                    self.command_line(), stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        except OSError as e:
            raise ProcessError(f"cannot start {self.binary}: {e}") from e
        self.pid = self._popen.pid
        self._follow(offset=self._output_size_before)
        table = self._wait_for_worker(started, timeout)
        log.info("haproxy master %d started, worker %s", self.pid,
                 ",".join(str(p) for p in sorted(table.worker_pids)))
        return table

    def _open_output(self) -> BinaryIO:
        """HAProxy's stdout/stderr: appended to the state dir's haproxy.out (0640)."""
        path = self.paths.output
        with contextlib.suppress(OSError):
            if path.stat().st_size > OUTPUT_MAX_BYTES:
                path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._output_size_before = os.fstat(fd).st_size
        return os.fdopen(fd, "ab")

    def _follow(self, offset: int) -> None:
        if self._pump is not None:
            self._pump.end()
        self._pump = _OutputTail(self.paths.output, offset, self._history, self.alive)
        self._pump.start()

    def _wait_for_worker(self, started: float, timeout: float) -> ProcTable:
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self._popen.returncode if self._popen else None
                if self._pump is not None:
                    # Its last lines may still be in the file: read them before quoting.
                    self._pump.end()
                    self._pump.join(timeout=2.0)
                alerts = "; ".join(self.alerts_since(started))
                raise ProcessError(f"haproxy exited at start (code {code})"
                                   + (f": {alerts}" if alerts else ""))
            table = self.try_proc_table()
            if table and table.workers:
                return table
            time.sleep(0.02)
        self.kill()
        raise ProcessError(f"haproxy did not start a worker within {timeout:g}s")

    def adopt(self) -> ProcTable | None:
        """Adopt a master that is already running for this state dir, if any."""
        pid = read_pid(self.paths.haproxy_pid)
        if pid is None or not is_haproxy(pid):
            return None
        table = self.try_proc_table()
        if table is None or table.master.pid != pid:
            return None
        self.pid, self._popen = pid, None
        log.info("adopted running haproxy master %d", pid)
        with contextlib.suppress(OSError):  # its output from now on: a reload's alerts
            self._follow(offset=self.paths.output.stat().st_size)
        return table

    def alive(self) -> bool:
        return proc.alive(self.pid, self._popen)

    def exit_code(self) -> int | None:
        return self._popen.returncode if self._popen else None

    def stop(self, grace: float = 10.0) -> None:
        """Soft-stop (SIGUSR1: finish sessions), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 3.0),
                          (signal.SIGKILL, 3.0)):
            if not self.alive():
                break
            self._signal(sig)
            self._wait_exit(wait)
        self._reap()

    def kill(self) -> None:
        if self.alive():
            self._signal(signal.SIGKILL)
            self._wait_exit(3.0)
        self._reap()

    def _signal(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _reap(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1.0)
        if self._pump is not None:
            self._pump.end()
            self._pump.join(timeout=1.0)

    # -- master CLI --------------------------------------------------------
    def proc_table(self) -> ProcTable:
        return self.master.show_proc(timeout=2.0)

    def try_proc_table(self) -> ProcTable | None:
        try:
            return self.proc_table()
        except RuntimeApiError:
            return None

    def alerts_since(self, since: float) -> list[str]:
        if self._pump is not None:
            self._pump.catch_up()
        return alert_messages(line for at, line in list(self._history) if at >= since)

    def reload(self, timeout: float = 30.0) -> ReloadResult:
        """Reload through the master CLI and verify the outcome.

        2.7+ says `Success=1|0`. 2.6 says nothing, so we compare `show proc`
        before and after: success is a new worker pid with the failed count
        at 0; a failure raises the failed count and keeps the old worker.
        """
        started = time.monotonic()
        before = self.proc_table()
        try:
            reply = self.master.reload()
        except RuntimeApiError as e:
            # 2.6 may drop the connection while the master re-executes.
            log.debug("reload reply: %s", e)
            reply = ""
        table = self._await_reload(before, reply, started + timeout)
        ok = table is not None and reload_verdict(before, table, reply) is True
        alerts = [] if ok else self.alerts_since(started)  # (reading them may wait a moment)
        return ReloadResult(ok, table, alerts, time.monotonic() - started)

    def _await_reload(self, before: ProcTable, reply: str,
                      deadline: float) -> ProcTable | None:
        table: ProcTable | None = None
        while time.monotonic() < deadline:
            table = self.try_proc_table()
            if table is not None and reload_verdict(before, table, reply) is not None:
                return table
            if not self.alive():
                return None
            # A reload takes 20-250 ms: a look costs the master less than the
            # 5 ms a longer pause would add on average.
            time.sleep(0.005)
        return table


def is_haproxy(pid: int) -> bool:
    """Whether `pid` (from a pid file) is a HAProxy, not a pid reused since."""
    return "haproxy" in (proc.name(pid) or "")
