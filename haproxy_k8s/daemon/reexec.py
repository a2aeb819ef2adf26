"""Replace the daemon's code without touching HAProxy: SIGUSR2 makes it re-execute itself.

After `pip install` of a new haproxy-k8s into the daemon's venv, the running daemon still
runs the old code. `systemctl restart` would stop HAProxy (a stop is a stop), and a SIGKILL
makes systemd count a failure. Instead, on SIGUSR2 the main loop finishes the event in hand,
stops its threads (watcher, health poller, metrics server) but *not* HAProxy, and calls
execv() on the same interpreter with the same arguments. The pid stays, so systemd keeps
its MAINPID and the watchdog and notify socket stay valid; the new code starts like a daemon
restarted after a crash: it finds the running master through the pid file and master socket,
adopts it, and sends READY=1 after its first apply.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from types import FrameType

log = logging.getLogger(__name__)

SIGNAL = signal.SIGUSR2
EVENT = "reexec"


def install(post: Callable[[str, str], None]) -> None:
    """Route SIGUSR2 to the main loop as a `reexec` event (the handler only posts)."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        post(EVENT, signal.Signals(signum).name)

    signal.signal(SIGNAL, on_signal)


def command_line() -> list[str]:
    """How to start this daemon again: same interpreter, same arguments.

    `-m haproxy_k8s.cli` rather than sys.argv[0]: the console script (or __main__.py) may be
    the very file the upgrade replaced, while the venv's interpreter stays.
    """
    return [sys.executable, "-m", "haproxy_k8s.cli", *sys.argv[1:]]


def execute(env: Mapping[str, str] | None = None) -> None:
    """Become a new daemon process with the same pid; never returns on success.

    Called by the main loop once its threads have stopped. Descriptors Python opened are
    close-on-exec (PEP 446): HAProxy's output pipe closes with the old image, as on a crash.
    `env` is added to the new image's environment: how a descriptor deliberately kept
    open (the [vip] fit link, whose closing would move the VIP) is found again.
    If execv() itself fails (the venv was removed, say), the error propagates and the unit
    fails: systemd restarts it and the restarted daemon adopts HAProxy all the same.
    """
    argv = command_line()
    log.info("re-executing the daemon (HAProxy keeps running): %s", " ".join(argv))
    os.environ.update(env or {})
    logging.shutdown()  # flush every handler: the new image starts with empty buffers
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
