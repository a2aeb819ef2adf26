"""Tests only: wedge the daemon's main loop on a signal, to prove the fit link's watchdog.

A SIGSTOP freezes every thread, the watchdog's too; a real wedge (a deadlock, a call that
never returns) stops the main loop only. With HAPROXY_K8S_TEST_WEDGE=<seconds> in the
daemon's environment, SIGURG makes the main thread sleep that long inside the handler:
the loop stops beating while every other thread runs on, as in a real wedge. Without the
variable nothing is installed and SIGURG keeps its default (ignored).
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

ENV = "HAPROXY_K8S_TEST_WEDGE"
SIGNAL = signal.SIGURG


def install() -> None:
    """Called from the main thread (signal handlers can only be set there)."""
    try:
        seconds = float(os.environ.get(ENV) or 0)
    except ValueError:
        return
    if seconds <= 0:
        return

    def wedge(_signum: int, _frame: FrameType | None) -> None:
        time.sleep(seconds)  # blocks the main loop: exactly what is being simulated

    signal.signal(SIGNAL, wedge)
