"""When to restart a process that keeps dying: a doubling delay with a ceiling.

Pure: the caller passes the clock in, so the policy is tested without waiting.
"""

from __future__ import annotations


class Backoff:
    """Allow a restart now, then wait `initial`, 2x, 4x, ... up to `maximum` seconds before
    the next one; once the process has stayed up `stable` seconds past the last wait, start
    again from `initial`.
    """

    def __init__(self, initial: float, maximum: float, stable: float = 60.0) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial, self.maximum, self.stable = initial, maximum, stable
        self.delay = initial  # the wait after the next failure
        self.next_at = 0.0  # no restart before this moment

    def due(self, now: float) -> bool:
        """Whether a restart may happen at `now`."""
        return now >= self.next_at

    def failed(self, now: float) -> float:
        """Record a restart at `now`; return how long the next one has to wait."""
        delay = self.delay
        self.next_at = now + delay
        self.delay = min(delay * 2, self.maximum)
        return delay

    def reset_if_stable(self, now: float) -> None:
        """Call while the process runs: a long enough run forgets earlier failures."""
        if now - self.next_at > self.stable:
            self.delay = self.initial
