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
from typing import Any

from ..haproxy.master import read_pid
from ..haproxy.paths import StatePaths
from .status import read_saved

POLL = 0.05


def restart_daemon(paths: StatePaths, timeout: float) -> int:
    pid = read_pid(paths.daemon_pid)
    if pid is None:
        return _fail(f"no running daemon ({paths.daemon_pid} missing)", 3)
    before = read_saved(paths).get("daemon", {})
    old_master = read_pid(paths.haproxy_pid)
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        return _fail(f"daemon pid {pid} is not running", 3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = read_saved(paths)
        if _restarted(before, doc):
            return _report(doc, old_master)
        time.sleep(POLL)
    return _fail(f"the daemon did not come back within {timeout:g}s "
                 "(see `journalctl -u haproxy-k8s`)", 1)


def _restarted(before: dict[str, Any], doc: dict[str, Any]) -> bool:
    daemon = doc.get("daemon", {})
    return (daemon.get("running") is True
            and daemon.get("started_at") not in (None, before.get("started_at"))
            and daemon.get("applies", 0) >= 1)


def _report(doc: dict[str, Any], old_master: int | None) -> int:
    daemon, haproxy = doc.get("daemon", {}), doc.get("haproxy", {})
    master = haproxy.get("pid")
    same = "same master" if master is not None and master == old_master else "NEW master"
    print(f"daemon {daemon.get('pid')} re-executed: haproxy-k8s {daemon.get('version')}, "
          f"haproxy master {master} ({same})")
    if daemon.get("last_error"):
        error = daemon["last_error"]
        where = f"{error.get('file')}: " if error.get("file") else ""
        return _fail(f"first apply after re-exec failed: {where}{error.get('message')}", 1)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"haproxy-k8s: {message}", file=sys.stderr)
    return code
