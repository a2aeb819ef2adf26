"""A HAProxy master that runs for our state dir but whose sockets are gone.

Someone deleted the state dir (or its sockets) under a running balancer: the
master and its worker keep serving, but neither the daemon nor `status` can
reach them, and a daemon that started a second master beside it would leave
two balancers answering, one of them without the operator's drain and maint.
The master is found by its command line (`-S <state_dir>/master.sock`), and
taken over: SIGUSR2 makes it re-execute on the published config, which binds
the master socket again. The admin socket needs one more step: a reload
inherits the old listening socket, whose path is gone, so the recovery config
names it by another spelling of the same path (`<dir>/./admin.sock`), which
HAProxy takes for a new listener and binds afresh.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Mapping

from .. import proc
from ..config.model import FAILOPEN_PREFIX, AdminState, cluster_of_backend, cluster_of_failopen
from ..errors import ProcessError
from .master import HaproxyMaster
from .paths import StatePaths
from .replies import ProcTable

log = logging.getLogger(__name__)

TAKE_OVER_TIMEOUT = 15.0


def master_socket_arg(paths: StatePaths) -> str:
    """The `-S` argument our masters are started with (haproxy/master.py)."""
    return f"{paths.master_socket},mode,600"


def find_orphan(paths: StatePaths) -> int | None:
    """The pid of a HAProxy master started for `paths`, if one runs."""
    want = master_socket_arg(paths)
    # Without /proc (psutil reads it too, on Linux) no master can be found.
    table = proc.processes() or []
    cmdlines = {pid: cmdline for pid, _, cmdline, _ in table}
    for pid, name, cmdline, ppid in table:
        # Workers carry the master's command line too: the master is the one whose
        # parent is not such a process.
        if "haproxy" in name and want in cmdline \
                and want not in cmdlines.get(ppid or 0, []):
            return pid
    return None


def recovery_text(text: str, paths: StatePaths,
                  states: Mapping[str, AdminState] | None = None) -> str:
    """`text` with the admin socket spelled so that a reload binds it afresh.

    The reload starts a worker without saved server state (the state file went
    with the directory): servers the operator put in maint start `disabled`, and
    drained ones at weight 0, so neither takes a client before the daemon puts
    their states back.
    """
    fresh = f"stats socket {paths.root}/./{paths.admin_socket.name} "
    text = text.replace(f"stats socket {paths.admin_socket} ", fresh, 1)
    if not states:
        return text
    lines, cluster = [], None
    for line in text.splitlines(keepends=True):
        words = line.split()
        if words[:1] == ["backend"] and len(words) > 1:
            cluster = cluster_of_backend(words[1]) or cluster_of_failopen(words[1])
        elif words[:1] == ["server"] and cluster is not None:
            node = words[1].removeprefix(FAILOPEN_PREFIX)  # a twin: its node's state
            line = _held(line, states.get(f"{cluster}/{node}"))
        lines.append(line)
    return "".join(lines)


def _held(line: str, state: AdminState | None) -> str:
    if state is AdminState.MAINT:
        return line.rstrip("\n") + " disabled\n"
    if state is AdminState.DRAIN:
        return re.sub(r" weight \d+", " weight 0", line, count=1)
    return line


def take_over(master: HaproxyMaster, pid: int, timeout: float = TAKE_OVER_TIMEOUT) -> ProcTable:
    """Make `master` manage the running master `pid` through new sockets.

    The published config must already be in place (it is what the master re-reads).
    """
    log.warning("haproxy master %d runs without its sockets: reloading it to bind them again",
                pid)
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError as e:
        raise ProcessError(f"haproxy master {pid} is gone") from e
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = master.try_proc_table()
        if table is not None and table.master.pid == pid and table.workers \
                and master.paths.admin_socket.exists():
            master.pid = pid
            return table
        time.sleep(0.05)
    raise ProcessError(f"haproxy master {pid} did not bind its sockets again "
                       f"within {timeout:g}s")
