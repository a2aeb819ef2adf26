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
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _state_by_psutil(pid)  # no /proc to read: let psutil find out
    # `pid (name) S …`: the name may hold ") ", the state follows the last one.
    end = data.rfind(b")")
    return data[end + 2:end + 3].decode() if end >= 0 else None


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
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # `pid (name) S ppid …`: the name may hold ") ", the fields follow the last one.
        start, end = stat.find(b"("), stat.rfind(b")")
        fields = stat[end + 2:].split()
        ppid = int(fields[1]) if len(fields) > 1 else None
        found.append((pid, stat[start + 1:end].decode(errors="replace"), cmdline, ppid))
    return found
