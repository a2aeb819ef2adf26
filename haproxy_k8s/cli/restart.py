"""`haproxy-k8s restart-daemon`: re-execute the running daemon (new code), keep HAProxy.

Sends SIGUSR2 to the daemon (see daemon/reexec.py) and waits until the new image has
published its first status: a `started_at` different from the old one, and HAProxy
reachable. Reports the version now running and whether HAProxy's master is the same.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from ..daemon.status import DaemonStatus, StatusDocument
from ..haproxy.paths import StatePaths, read_pid
from .status import read_saved

POLL = 0.05


def restart_daemon(paths: StatePaths, timeout: float) -> int:
    pid = read_pid(paths.daemon_pid)
    if pid is None:
        return _fail(f"no running daemon ({paths.daemon_pid} missing)", 3)
    saved = read_saved(paths)
    before = saved.daemon if saved is not None else DaemonStatus()
    old_master = read_pid(paths.haproxy_pid)
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        return _fail(f"daemon pid {pid} is not running", 3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = read_saved(paths)
        if doc is not None and _restarted(before, doc):
            return _report(doc, old_master)
        time.sleep(POLL)
    return _fail(f"the daemon did not come back within {timeout:g}s "
                 "(see `journalctl -u haproxy-k8s`)", 1)


def _restarted(before: DaemonStatus, doc: StatusDocument) -> bool:
    daemon = doc.daemon
    return (daemon.running and daemon.started_at not in (None, before.started_at)
            and daemon.applies >= 1)


def _report(doc: StatusDocument, old_master: int | None) -> int:
    daemon, master = doc.daemon, doc.haproxy.pid
    same = "same master" if master is not None and master == old_master else "NEW master"
    print(f"daemon {daemon.pid} re-executed: haproxy-k8s {daemon.version}, "
          f"haproxy master {master} ({same})")
    if daemon.last_error:
        error = daemon.last_error
        where = f"{error.get('file')}: " if error.get("file") else ""
        return _fail(f"first apply after re-exec failed: {where}{error.get('message')}", 1)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"haproxy-k8s: {message}", file=sys.stderr)
    return code
