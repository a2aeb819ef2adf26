"""Child processes: the environment they start with, and ending them by pid (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import psutil

import haproxy_k8s

# The directory holding the haproxy_k8s this process imported: the installed package for
# the tests, the work tree for the benchmarks (run from the repository root).
PACKAGE_ROOT = str(Path(haproxy_k8s.__file__).resolve().parent.parent)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child that must import the same haproxy_k8s as this process.

    NOTIFY_SOCKET is dropped: a daemon under test must not talk to the caller's systemd.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal `pid` and its descendants (found by pid) and reap them."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
    psutil.wait_procs(procs, timeout=5)


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM and wait; after `timeout`, SIGKILL it and whatever it started."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait(timeout=5)
