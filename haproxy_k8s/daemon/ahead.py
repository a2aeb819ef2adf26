"""Python work done ahead, on a thread, while the main thread waits on HAProxy.

At a start with 1,000 clusters the main thread spends ~0.4 s waiting for
`haproxy -c` and for HAProxy's start, both other processes on another core.
Work the first status needs (shapes, imports) fits in there, off the path to
READY. Only started at that wait: started earlier it would take the GIL from
the load and render it is meant not to delay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-ahead"


class Ahead:
    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            self._work()
        except Exception:  # the same work is done again when it is needed
            log.exception("preparing ahead failed")
