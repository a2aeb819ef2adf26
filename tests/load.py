"""A bounded client load through the balancer: threads doing TLS requests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from helpers import https_get


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)


class Load:
    """`threads` clients each open a TLS connection and GET /version, in a loop.

    Bounded twice: stop() ends it, and so does `max_seconds` on its own.
    """

    def __init__(self, host: str, port: int, threads: int = 4, max_seconds: float = 120.0,
                 path: str = "/version") -> None:
        self.host, self.port, self.path = host, port, path
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                status, _ = https_get(self.host, self.port, self.path, timeout=5.0)
                error = None if status == 200 else f"HTTP {status}"
            except OSError as e:
                error = repr(e)
            with self._lock:
                if error is None:
                    self.result.ok += 1
                else:
                    self.result.failures.append(error)

    def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.result.ok < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self.result
