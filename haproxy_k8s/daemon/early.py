"""The drop-ins read while the loop waits out the settle time after a write.

A finished write is applied `watch.settle` (20 ms) later, in case more files
follow. Reading 1,000 drop-ins takes ~30 ms, and the loop's thread does
nothing in that wait: the read starts on a thread at the write and is used
when the apply comes, if no file event came after it started; otherwise the
apply reads the directory again itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

THREAD_NAME = "haproxy-k8s-early-read"


class EarlyRead(Generic[T]):
    """`read()` on a thread, started after the loop's `generation`-th file event."""

    def __init__(self, read: Callable[[], T], generation: int) -> None:
        self.generation = generation
        self._read = read
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> T:
        """What `read()` returned, once it has; raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self._value = self._read()
        except BaseException as e:  # raised again where the result is taken
            self._error = e
