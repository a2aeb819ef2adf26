"""Is a process we supervise (or adopted) still alive? One answer for every supervisor."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess  # for a type only: `status` asks alive() and runs nothing


def alive(pid: int | None, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """Our own child: ask its Popen (which also reaps it); anything else: not a zombie."""
    if pid is None:
        return False
    if popen is not None:
        return popen.poll() is None
    state = _state(pid)
    return state is not None and state != "Z"


def _state(pid: int) -> str | None:
    """The process's state letter (`Z`: a zombie); None when there is no such process.

    Read from /proc, as psutil does on Linux, without importing psutil: that
    import was a tenth of `haproxy-k8s status`, which asks this once.
    """
    if pid <= 0:
        return None
    try:
        stat = _stat(pid)
    except OSError:
        return _state_by_psutil(pid)  # no /proc to read: let psutil find out
    return stat[1][0].decode() if stat is not None and stat[1] else None


def name(pid: int) -> str | None:
    """The process's name (its `comm`, as psutil's name() on Linux); None when
    there is no such process or /proc cannot tell."""
    try:
        stat = _stat(pid) if pid > 0 else None
    except OSError:
        return None
    return stat[0] if stat is not None else None


def _stat(pid: int) -> tuple[str, list[bytes]] | None:
    """/proc/<pid>/stat: the name, and the fields after it (state, ppid, …); None
    when there is no such process. OSError: /proc cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    # `pid (name) S ppid …`: the name may hold ") ", the fields follow the last one.
    start, end = data.find(b"("), data.rfind(b")")
    if start < 0 or end < start:
        return None
    return data[start + 1:end].decode(errors="replace"), data[end + 2:].split()


def _state_by_psutil(pid: int) -> str | None:
    import psutil

    try:
        return "Z" if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "R"
    except psutil.Error:
        return None


def processes() -> list[tuple[int, str, list[str], int | None]] | None:
    """(pid, name, command line, parent pid) of every process; None without /proc.

    From /proc, as psutil reads it on Linux: the daemon looks for an orphaned
    master at every start, and psutil's import alone was a tenth of the
    daemon's imports. A process that ends meanwhile is left out.
    """
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = [arg.decode(errors="replace") for arg in f.read().split(b"\0")[:-1]]
            stat = _stat(pid)
        except OSError:
            continue
        if stat is not None:
            ppid = int(stat[1][1]) if len(stat[1]) > 1 else None
            found.append((pid, stat[0], cmdline, ppid))
    return found
