"""Is a process we supervise (or adopted) still alive? One answer for every supervisor."""

from __future__ import annotations

import subprocess

import psutil


def alive(pid: int | None, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """Our own child: ask its Popen (which also reaps it); anything else: not a zombie."""
    if pid is None:
        return False
    if popen is not None:
        return popen.poll() is None
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
