"""A bounded client load: threads repeating one request, recording what happened when.

The request is the caller's (TLS GET for the tests, a raw HTTP probe for the benchmarks);
it returns who answered ("" when it cannot tell) or raises RequestFailed or OSError.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Request = Callable[[], str]


class RequestFailed(Exception):
    """An answer, but not the expected one; the message says what came back."""


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)  # why, in order
    failure_times: list[float] = field(default_factory=list)  # when (monotonic)
    by_node: Counter[str] = field(default_factory=Counter)
    # (start, seconds) of every successful request
    latencies: list[tuple[float, float]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def errors(self) -> Counter[str]:
        return Counter(self.failures)

    def failed_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.failure_times if start <= t <= end)

    def slowest_between(self, start: float, end: float) -> float:
        return max((d for t, d in self.latencies if start <= t <= end), default=0.0)


class Load:
    """`threads` clients, each: `request()`, pause, repeat.

    Bounded twice: stop() ends it, and so does `max_seconds` on its own.
    """

    def __init__(self, request: Request, *, threads: int = 4, pause: float = 0.0,
                 max_seconds: float = 120.0, name: str = "load") -> None:
        self.request, self.pause = request, pause
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            started = time.monotonic()
            node, error = self._one()
            took = time.monotonic() - started
            with self._lock:
                if error is None:
                    self.result.ok += 1
                    self.result.by_node[node] += 1
                    self.result.latencies.append((started, took))
                else:
                    self.result.failures.append(error)
                    self.result.failure_times.append(time.monotonic())
            self._stop.wait(self.pause)

    def _one(self) -> tuple[str, str | None]:
        try:
            return self.request(), None
        except RequestFailed as e:
            return "", str(e)
        except OSError as e:
            return "", repr(e)

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` requests succeeded in all; False if that took too long."""
        deadline = time.monotonic() + timeout
        while self.result.ok < count:
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(0.01)
        return True

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self.result
