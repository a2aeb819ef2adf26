"""One piece of work on a thread of its own, beside the caller's.

A structural apply waits about 130 ms for `haproxy -c` at 1,000 clusters,
a process of its own on another core. Work the reload needs after it and
that does not depend on its verdict (dumping the servers' state) is done
meanwhile; the caller takes the result (or the exception) when it needs it.
The daemon's loop reads the drop-ins this way while it waits out the settle
time after a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Beside(Generic[T]):
    """`work()` started now on a daemon thread named `name`; `result()` waits for it."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._outcome: tuple[T] | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._outcome = (work(),)
        except BaseException as e:  # handed to the caller by result()
            self._outcome = e

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> T:
        """Wait for the work; return what it returned or raise what it raised."""
        self._thread.join()
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome[0]
